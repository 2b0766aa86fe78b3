"""Dataset, origdatablock and datablock routes, v3 and v4.

Path parameters arrive still percent-encoded (see `middleware.CanonicalPaths`)
and are unquoted once here, so a pid must be sent as `quote(pid, safe="")`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Query, Request, Response

from devstack.scicat.access import Caller
from devstack.scicat.auth import require_caller
from devstack.scicat.bodies import is_merge_patch, read_body
from devstack.scicat.catalog import Catalog, to_obsolete_view
from devstack.scicat.errors import nest_error

CallerDep = Annotated[Caller, Depends(require_caller)]


def build_dataset_router(catalog: Catalog) -> APIRouter:
    router = APIRouter()

    # --- datasets, v3 ----------------------------------------------------------------

    @router.post("/api/v3/datasets", status_code=201)
    async def create_v3(request: Request, caller: CallerDep) -> dict[str, Any]:
        body = await read_body(request)
        return to_obsolete_view(catalog.create_dataset(caller, body, api_version=3))

    @router.post("/api/v3/datasets/isValid")
    async def is_valid_v3(request: Request, caller: CallerDep) -> dict[str, Any]:
        """v3 isValid reports missing/mistyped fields; `error` is SciCat's, `reason` ours."""
        body = await read_body(request)
        errors = [
            e for e in catalog.validate_dataset(body, api_version=3) if "should not exist" not in e
        ]
        if errors:
            return {"valid": False, "reason": errors, "error": "; ".join(errors)}
        return {"valid": True}

    @router.get("/api/v3/datasets/{pid}")
    async def get_v3(pid: str, caller: CallerDep, filter: str | None = None) -> dict[str, Any]:
        """findById: the list route's access filter; `filter.include` adds relations.

        The v3 list route builds its lookups with applyDefaults=false, so included
        origdatablocks and datablocks are NOT filtered by the caller's rights: whoever
        may read the dataset (e.g. DatasetReadAny of the lifecycle groups) reads them.
        """
        relations = _included_relations(filter)
        dataset = catalog.readable_dataset(caller, unquote(pid))
        reply = {**to_obsolete_view(dataset)}
        if "origdatablocks" in relations:
            reply["origdatablocks"] = catalog.origdatablocks_of(dataset["pid"])
        if "datablocks" in relations:
            reply["datablocks"] = [
                b for b in catalog.datablocks_matching_all({"datasetId": dataset["pid"]})
            ]
        return {**reply, "history": []}

    @router.patch("/api/v3/datasets/{pid}")
    async def patch_v3(pid: str, request: Request, caller: CallerDep) -> dict[str, Any]:
        body = await read_body(request)
        updated = catalog.patch_dataset(
            caller, unquote(pid), body, api_version=3, is_merge_patch=is_merge_patch(request)
        )
        return to_obsolete_view(updated)

    # --- datasets, v4 ----------------------------------------------------------------

    @router.post("/api/v4/datasets", status_code=201)
    async def create_v4(request: Request, caller: CallerDep) -> dict[str, Any]:
        body = await read_body(request)
        return catalog.create_dataset(caller, body, api_version=4)

    @router.post("/api/v4/datasets/isValid")
    async def is_valid_v4(request: Request, caller: CallerDep) -> dict[str, Any]:
        body = await read_body(request)
        errors = [
            e for e in catalog.validate_dataset(body, api_version=4) if "should not exist" not in e
        ]
        return {"valid": not errors}

    @router.get("/api/v4/datasets/{pid}")
    async def get_v4(
        pid: str, caller: CallerDep, include: Annotated[list[str] | None, Query()] = None
    ) -> dict[str, Any]:
        dataset = catalog.readable_dataset(caller, unquote(pid))
        reply = dict(dataset)
        # Relations are filtered by the caller's rights (DatasetsAccessService).
        visible = caller.is_admin or caller.has_access(dataset)
        if include and "origdatablocks" in include:
            reply["origdatablocks"] = catalog.origdatablocks_of(dataset["pid"]) if visible else []
        if include and "datablocks" in include:
            blocks = catalog.datablocks_matching(caller, {"datasetId": dataset["pid"]})
            reply["datablocks"] = blocks if visible else []
        return reply

    @router.patch("/api/v4/datasets/{pid}")
    async def patch_v4(pid: str, request: Request, caller: CallerDep) -> dict[str, Any]:
        body = await read_body(request)
        return catalog.patch_dataset(
            caller, unquote(pid), body, api_version=4, is_merge_patch=is_merge_patch(request)
        )

    # --- lifecycle (same behaviour in v3 and v4) -------------------------------------

    for version in ("v3", "v4"):

        @router.get(f"/api/{version}/datasets/{{pid}}/datasetlifecycle")
        async def get_lifecycle(pid: str, caller: CallerDep) -> dict[str, Any]:
            return catalog.readable_dataset(caller, unquote(pid)).get("datasetlifecycle", {})

        @router.patch(f"/api/{version}/datasets/{{pid}}/datasetlifecycle")
        async def patch_lifecycle(pid: str, request: Request, caller: CallerDep) -> dict:
            body = await read_body(request)
            return await catalog.patch_lifecycle(caller, unquote(pid), body)

    # --- origdatablocks --------------------------------------------------------------

    @router.post("/api/v3/datasets/{pid}/origdatablocks", status_code=201)
    async def create_dataset_origdatablock(
        pid: str, request: Request, caller: CallerDep
    ) -> dict[str, Any]:
        body = await read_body(request)
        return catalog.create_origdatablock(caller, body, dataset_pid=unquote(pid))

    @router.get("/api/v3/datasets/{pid}/origdatablocks")
    async def list_dataset_origdatablocks(pid: str, caller: CallerDep) -> list[dict[str, Any]]:
        return catalog.blocks_of_dataset(caller, unquote(pid), "origdatablocks")

    for version in ("v3", "v4"):

        @router.post(f"/api/{version}/origdatablocks", status_code=201)
        async def create_origdatablock(request: Request, caller: CallerDep) -> dict[str, Any]:
            body = await read_body(request)
            return catalog.create_origdatablock(caller, body, dataset_pid=None)

    # --- datablocks ------------------------------------------------------------------

    @router.post("/api/v3/datasets/{pid}/datablocks", status_code=201)
    async def create_dataset_datablock(
        pid: str, request: Request, caller: CallerDep
    ) -> dict[str, Any]:
        body = await read_body(request)
        return await catalog.create_datablock(caller, body, dataset_pid=unquote(pid))

    @router.get("/api/v3/datasets/{pid}/datablocks")
    async def list_dataset_datablocks(pid: str, caller: CallerDep) -> list[dict[str, Any]]:
        return catalog.blocks_of_dataset(caller, unquote(pid), "datablocks")

    @router.delete("/api/v3/datasets/{pid}/datablocks/{block_id}")
    async def delete_dataset_datablock(pid: str, block_id: str, caller: CallerDep) -> Response:
        catalog.delete_datablock(caller, unquote(pid), unquote(block_id))
        return Response(status_code=200)  # SciCat returns nothing (undefined)

    @router.post("/api/v3/datablocks", status_code=201)
    async def create_datablock(request: Request, caller: CallerDep) -> dict[str, Any]:
        body = await read_body(request)
        return await catalog.create_datablock(caller, body, dataset_pid=None)

    @router.get("/api/v3/datablocks")
    async def find_datablocks(caller: CallerDep, filter: str | None = None) -> list[dict]:
        try:
            parsed = json.loads(filter) if filter else {}
        except ValueError as exc:
            raise nest_error(400, "filter must be a JSON object") from exc
        where = parsed.get("where", {}) if isinstance(parsed, dict) else {}
        if not isinstance(where, dict):
            raise nest_error(400, "filter.where must be an object")
        return catalog.datablocks_matching(caller, where)

    return router


def _included_relations(filter_text: str | None) -> set[str]:
    """`{"include": ["origdatablocks", {"relation": "datablocks"}, "all"]}` -> names."""
    if not filter_text:
        return set()
    try:
        parsed = json.loads(filter_text)
    except ValueError as exc:
        raise nest_error(400, f"Invalid JSON in filter: {exc}") from exc
    include = parsed.get("include") if isinstance(parsed, dict) else None
    names = set()
    for item in include if isinstance(include, list) else []:
        name = item.get("relation") if isinstance(item, dict) else item
        if isinstance(name, str):
            names.add(name)
    return {"origdatablocks", "datablocks"} if "all" in names else names
