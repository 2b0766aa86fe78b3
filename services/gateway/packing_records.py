"""The datablocker's records of a dataset, as the gateway reads them (never writes them).

`contracts.dataset_records`: per pid, the `DatablocksCreated` of its packing
(bucket DATABLOCKS) and, once archived, the `CleanedDataset` written before its
landing and archival copies were removed (bucket CLEANED_DATASETS).
"""

from dataclasses import dataclass

from contracts import kv
from contracts.dataset_records import CleanedDataset
from contracts.events import DatablocksCreated
from runtime.kvstore import JetStream, KvRecords, open_bucket


@dataclass(frozen=True)
class PackingRecords:
    packed_records: KvRecords[DatablocksCreated]
    cleaned_records: KvRecords[CleanedDataset]

    async def packed(self, pid: str) -> DatablocksCreated | None:
        """The dataset's packing, if the datablocker packed it."""
        return await self.packed_records.get(kv.id_key(pid))

    async def cleaned(self, pid: str) -> CleanedDataset | None:
        """The dataset's archiving, if it was archived and its copies removed."""
        return await self.cleaned_records.get(kv.id_key(pid))


async def open_packing_records(js: JetStream) -> PackingRecords:
    """Both buckets (created on first use, by whichever service comes first)."""
    return PackingRecords(
        KvRecords(await open_bucket(js, kv.DATABLOCKS), DatablocksCreated),
        KvRecords(await open_bucket(js, kv.CLEANED_DATASETS), CleanedDataset),
    )
