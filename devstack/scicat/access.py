"""Who may do what: SciCat's configured group lists and its CASL rules.

Follows SciCatProject/backend v4.28: `src/config/configuration.ts` reads the
group lists from the environment, `src/casl/casl-ability.factory.ts` turns them
into abilities, and the controllers (`src/datasets/datasets.controller.ts`,
`src/datablocks/datablocks.controller.ts`, `src/jobs/jobs.controller.utils.ts`)
check them in two steps: the PoliciesGuard checks the endpoint ability (403
"Forbidden resource"), the handler checks the instance (403 with the handler's
own message, or a 400 for some job rules).

No group name means anything by itself. Two details of v4.28 are kept as they are:

- `ADMIN_GROUPS`, `DELETE_GROUPS` and the three dataset-creation lists are split
  on ',' and trimmed; `UPDATE_DATASET_LIFECYCLE_GROUPS`,
  `CREATE_JOB_PRIVILEGED_GROUPS`, `UPDATE_JOB_PRIVILEGED_GROUPS` and
  `DELETE_JOB_GROUPS` are kept as the raw string, and membership is
  `string.includes(group)`: a substring test (group `arch` is "in"
  `"archivemanager"`).
- the dataset tiers are exclusive and checked in order (admin, create-privileged,
  create-with-pid, create, plain), and so are the job tiers (admin,
  create-job-privileged, update-job-privileged, plain): a member of
  CREATE_JOB_PRIVILEGED_GROUPS may create any job but update none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from devstack.scicat.jobconfig import JobConfig, JobTypeConfig

# src/jobs/types/jobs-auth.enum.ts
CREATE_JOB_AUTH = (
    "#all",
    "#datasetPublic",
    "#authenticated",
    "#datasetAccess",
    "#datasetOwner",
    "#jobAdmin",
)
UPDATE_JOB_AUTH = ("#all", "#jobOwnerUser", "#jobOwnerGroup", "#jobAdmin")
DATASET_JOB_AUTH = tuple(v for v in CREATE_JOB_AUTH if "#dataset" in v)


def _group_list(raw: str) -> tuple[str, ...]:
    """`raw.split(",").map((v) => v.trim())`: "" gives [""], as in SciCat."""
    return tuple(v.strip() for v in raw.split(","))


@dataclass(frozen=True)
class AccessGroups:
    """SciCat's `accessGroups` configuration (configuration.ts), from the environment."""

    admin: tuple[str, ...] = ("",)
    delete: tuple[str, ...] = ("",)
    create_dataset: tuple[str, ...] = ("#all",)
    create_dataset_with_pid: tuple[str, ...] = ("",)
    create_dataset_privileged: tuple[str, ...] = ("",)
    # Raw strings: SciCat tests these with String.includes (a substring match).
    update_dataset_lifecycle: str = ""
    create_job_privileged: str = ""
    update_job_privileged: str = ""
    delete_job: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AccessGroups:
        """Read SciCat's variables; unset or empty takes SciCat's default (`||`)."""

        def raw(name: str, default: str = "") -> str:
            return env.get(name) or default

        return cls(
            admin=_group_list(raw("ADMIN_GROUPS")),
            delete=_group_list(raw("DELETE_GROUPS")),
            create_dataset=_group_list(raw("CREATE_DATASET_GROUPS", "#all")),
            create_dataset_with_pid=_group_list(raw("CREATE_DATASET_WITH_PID_GROUPS")),
            create_dataset_privileged=_group_list(raw("CREATE_DATASET_PRIVILEGED_GROUPS")),
            update_dataset_lifecycle=raw("UPDATE_DATASET_LIFECYCLE_GROUPS"),
            create_job_privileged=raw("CREATE_JOB_PRIVILEGED_GROUPS"),
            update_job_privileged=raw("UPDATE_JOB_PRIVILEGED_GROUPS"),
            delete_job=raw("DELETE_JOB_GROUPS"),
        )


DatasetTier = Literal["admin", "privileged", "with_pid", "create", "plain"]
JobTier = Literal["admin", "create_privileged", "update_privileged", "plain"]


@dataclass(frozen=True)
class Caller:
    """The authenticated user of one request and the abilities SciCat derives for it."""

    username: str
    email: str
    groups: tuple[str, ...]
    access: AccessGroups

    # --- membership ---------------------------------------------------------------

    def in_list(self, groups: tuple[str, ...]) -> bool:
        return any(g in groups for g in self.groups)

    def in_raw(self, raw: str) -> bool:
        """`user.currentGroups.some((g) => raw.includes(g))`."""
        return any(g in raw for g in self.groups)

    def in_any(self, groups: list[str] | tuple[str, ...] | None) -> bool:
        return bool(set(groups or ()) & set(self.groups))

    @property
    def is_admin(self) -> bool:
        return self.in_list(self.access.admin)

    @property
    def in_delete_groups(self) -> bool:
        return self.in_list(self.access.delete)

    @property
    def in_lifecycle_groups(self) -> bool:
        return self.in_raw(self.access.update_dataset_lifecycle)

    @property
    def dataset_tier(self) -> DatasetTier:
        """The exclusive branch of datasetEndpointAccess/datasetInstanceAccess."""
        access = self.access
        if self.is_admin:
            return "admin"
        if self.in_list(access.create_dataset_privileged):
            return "privileged"
        if self.in_list(access.create_dataset_with_pid) or "#all" in access.create_dataset_with_pid:
            return "with_pid"
        if self.in_list(access.create_dataset) or "#all" in access.create_dataset:
            return "create"
        return "plain"

    @property
    def job_tier(self) -> JobTier:
        """The exclusive branch of jobsEndpointAccess/jobsInstanceAccessCan."""
        if self.is_admin:
            return "admin"
        if self.in_raw(self.access.create_job_privileged):
            return "create_privileged"
        if self.in_raw(self.access.update_job_privileged):
            return "update_privileged"
        return "plain"

    # --- datasets (datasetEndpointAccess / datasetInstanceAccess) -------------------

    def owns(self, dataset: Mapping[str, Any]) -> bool:
        return dataset.get("ownerGroup") in self.groups

    def has_access(self, dataset: Mapping[str, Any]) -> bool:
        """ReadOneAccess conditions: ownerGroup or accessGroups in the user's, or published."""
        return (
            self.owns(dataset)
            or self.in_any(dataset.get("accessGroups"))
            or dataset.get("isPublished") is True
        )

    @property
    def may_create_datasets(self) -> bool:
        """Endpoint DatasetCreate (also DatasetUpdate, the block creates and updates)."""
        return self.dataset_tier != "plain"

    def may_create_dataset(self, body: Mapping[str, Any]) -> bool:
        """CreateAny, CreateOwnerWithPid or CreateOwnerNoPid (pid must be empty)."""
        tier = self.dataset_tier
        if tier in ("admin", "privileged"):
            return True
        if tier == "with_pid":
            return self.owns(body)
        return tier == "create" and self.owns(body) and not body.get("pid")

    def may_read_dataset(self, dataset: Mapping[str, Any], *, shared_with: bool = True) -> bool:
        """DatasetReadAny (admin, lifecycle groups) or the access conditions; the v3 read
        goes through the list filter, which also admits `sharedWith` the user's email."""
        if self.is_admin or self.in_lifecycle_groups:
            return True
        shared = shared_with and self.email in (dataset.get("sharedWith") or [])
        return self.has_access(dataset) or shared

    def may_update_dataset(self, dataset: Mapping[str, Any]) -> bool:
        """DatasetUpdateAny (admin) or DatasetUpdateOwner (creating tiers, own group)."""
        if self.dataset_tier == "admin":
            return True
        return self.dataset_tier != "plain" and self.owns(dataset)

    @property
    def may_update_lifecycles(self) -> bool:
        """Endpoint DatasetLifecycleUpdate."""
        return self.dataset_tier != "plain" or self.in_lifecycle_groups

    def may_update_lifecycle(self, dataset: Mapping[str, Any]) -> bool:
        """UpdateAny, UpdateOwner or DatasetLifecycleUpdateAny (lifecycle groups)."""
        return self.may_update_dataset(dataset) or self.in_lifecycle_groups

    def may_read_blocks_of(self, dataset: Mapping[str, Any]) -> bool:
        """Dataset(Orig)datablockRead: ...ReadAny is granted to admins only; others need
        the access conditions. A lifecycle or delete group is not enough (403)."""
        return self.is_admin or self.has_access(dataset)

    def may_create_blocks_in(self, dataset: Mapping[str, Any]) -> bool:
        """Dataset(Orig)datablockCreateAny: any dataset for admins and create-privileged,
        own groups for the other creating tiers."""
        tier = self.dataset_tier
        if tier in ("admin", "privileged"):
            return True
        return tier in ("with_pid", "create") and self.owns(dataset)

    @property
    def may_delete_blocks(self) -> bool:
        """DatasetDatablockDelete(Any): DELETE_GROUPS only (not even admins)."""
        return self.in_delete_groups

    # --- the plain /datablocks routes (datablockInstanceAccess) ----------------------

    @property
    def may_create_datablock_records(self) -> bool:
        """DatablockCreateInstance: admins and members of a dataset-creation list
        (membership: `#all` in CREATE_DATASET_GROUPS does not count here)."""
        access = self.access
        return (
            self.is_admin
            or self.in_list(access.create_dataset)
            or self.in_list(access.create_dataset_privileged)
            or self.in_list(access.create_dataset_with_pid)
        )

    @property
    def may_read_any_datablock(self) -> bool:
        """DatablockReadAny: DELETE_GROUPS and admins."""
        return self.in_delete_groups or self.is_admin

    def may_read_datablock(self, block: Mapping[str, Any]) -> bool:
        return self.may_read_any_datablock or self.has_access(block)

    # --- jobs (jobsEndpointAccess / jobsInstanceAccessCan) ---------------------------

    def _job_auth_values(self) -> list[str]:
        return [*(f"@{g}" for g in self.groups), self.username]

    def may_create_jobs(self, config: JobConfig) -> bool:
        """Endpoint JobCreate."""
        tier = self.job_tier
        if tier in ("admin", "create_privileged"):
            return True
        if tier == "update_privileged":
            return False
        allowed = [*CREATE_JOB_AUTH, *self._job_auth_values()]
        return any(j.create.auth and j.create.auth in allowed for j in config.jobs)

    def may_update_jobs(self, config: JobConfig) -> bool:
        """Endpoint JobUpdate."""
        tier = self.job_tier
        if tier in ("admin", "update_privileged"):
            return True
        if tier == "create_privileged":
            return False
        allowed = [*UPDATE_JOB_AUTH, *self._job_auth_values()]
        return any(j.update.auth and j.update.auth in allowed for j in config.jobs)

    @property
    def may_create_any_job(self) -> bool:
        """JobCreateAny."""
        return self.job_tier in ("admin", "create_privileged")

    def may_create_job_by_configuration(self, job_type: JobTypeConfig) -> bool:
        """JobCreateConfiguration (plain users): the type's create.auth is a special
        value (#all, #authenticated, #jobAdmin, #dataset...), `@<group>` or the username."""
        if self.job_tier != "plain":
            return False
        return job_type.create.auth in (*CREATE_JOB_AUTH, *self._job_auth_values())

    def may_update_job(self, job: Mapping[str, Any], job_type: JobTypeConfig) -> bool:
        """updateJob's canUpdate: JobUpdateAny, or JobUpdateConfiguration and not #jobAdmin."""
        tier = self.job_tier
        if tier in ("admin", "update_privileged"):
            return True
        if tier != "plain":
            return False
        auth = job_type.update.auth
        if auth == "#jobOwnerUser":
            return job.get("ownerUser") == self.username
        if auth == "#jobOwnerGroup":
            return job.get("ownerGroup") in self.groups
        plain_values = [v for v in UPDATE_JOB_AUTH if "#job" not in v]
        return auth in (*plain_values, *self._job_auth_values())

    def may_read_job(self, job: Mapping[str, Any]) -> bool:
        """JobReadAny (every privileged tier) or JobReadAccess (owner group or user)."""
        if self.job_tier != "plain":
            return True
        return job.get("ownerGroup") in self.groups or job.get("ownerUser") == self.username

    @property
    def may_delete_jobs(self) -> bool:
        return self.in_raw(self.access.delete_job)
