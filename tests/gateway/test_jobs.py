"""Job JSON as the gateway reads it: any shape is a JobView or a 422 sentence, never a crash."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import JobDataset
from services.gateway.errors import Conflict, InvalidRequest
from services.gateway.jobs import JobView, max_job_datasets, read_job, saved_datasets

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
dataset_entries = st.fixed_dictionaries(
    {},
    optional={
        "pid": st.sampled_from(["20.500.11935/a", "p/1", "", "a/raw_files/b", ".."]) | json_values,
        "files": st.lists(st.text(max_size=10) | json_values, max_size=3) | json_values,
    },
)
jobs = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["j-1", "a b", "..", "x" * 200, ""]) | json_values,
        "_id": json_values,
        "type": st.sampled_from(["archive", "retrieve"]) | json_values,
        "ownerGroup": json_values,
        "statusCode": json_values,
        "jobStatusMessage": json_values,
        "jobParams": st.fixed_dictionaries(
            {}, optional={"datasetList": st.lists(dataset_entries | json_values, max_size=4)}
        )
        | json_values,
        "datasetList": st.lists(dataset_entries | json_values, max_size=4) | json_values,
    },
)


@settings(max_examples=500, deadline=None)
@given(jobs)
def test_any_job_json_is_read_or_refused_with_a_sentence(body: dict) -> None:
    """Wrong types anywhere (`files: 5`, a number for an id, NaN) give InvalidRequest only."""
    outcome = read_or_refusal(body)
    assert isinstance(outcome, JobView) or outcome.startswith("The job")


def read_or_refusal(body: dict) -> JobView | str:
    """The job read, or the 422's sentence."""
    try:
        return read_job(body, "The job", 3)
    except InvalidRequest as exc:
        return exc.detail


def test_the_dataset_limit_follows_the_bus_payload() -> None:
    """8 KiB of job record per dataset: 1,024 datasets on NATS's recommended 8 MB."""
    assert max_job_datasets(8 * 1024 * 1024) == 1024
    assert max_job_datasets(1024 * 1024) == 128


def view(job_type: str, *pids: str, datasets: bool = True) -> JobView:
    listed = tuple(JobDataset(pid=pid) for pid in pids) if datasets else None
    return JobView("j-1", job_type, "v4", "group1", listed)


def test_scicats_dataset_list_is_what_runs() -> None:
    """The minimal `{"id","type"}` POST takes SciCat's list; an equal list is accepted."""
    saved = view("archive", "p/1", "p/2")

    assert saved_datasets(view("archive", datasets=False), saved) == saved.datasets
    assert saved_datasets(view("archive", "p/2", "p/1"), saved) == saved.datasets


@pytest.mark.parametrize(
    "posted", [view("retrieve", "p/1"), view("archive", "p/1", "p/9"), view("archive", "p/9")]
)
def test_a_post_contradicting_scicat_is_a_conflict(posted: JobView) -> None:
    with pytest.raises(Conflict):
        saved_datasets(posted, view("archive", "p/1"))
