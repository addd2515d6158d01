"""Result records: build, validate, write atomically and read back one JSON file per run.

See ``record.py`` for the layout and the write guarantees, ``validate.py`` for
the checks, ``canonical.py`` for canonical JSON and ``config_hash``, and
``schema/record-v1.schema.json`` for the contract.
"""

from harmony_bench.results.canonical import canonical_json, config_hash, to_jsonable
from harmony_bench.results.record import (
    SCHEMA_VERSION,
    build_record,
    flatten_metrics,
    is_metric_leaf,
    iter_records,
    load_record,
    metric,
    record_filename,
    write_record,
)
from harmony_bench.results.validate import (
    SUPPORTED_SCHEMA_VERSIONS,
    RecordError,
    load_schema,
    validate_file,
    validate_record,
)

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "RecordError",
    "build_record",
    "canonical_json",
    "config_hash",
    "flatten_metrics",
    "is_metric_leaf",
    "iter_records",
    "load_record",
    "load_schema",
    "metric",
    "record_filename",
    "to_jsonable",
    "validate_file",
    "validate_record",
    "write_record",
]
