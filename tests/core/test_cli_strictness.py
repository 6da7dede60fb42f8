"""The CLI and config strictness the core owns: sizes in decimal units,
JSON log times, `emit artifact --uri` alone, `--version`."""

from __future__ import annotations

import json
import logging
import re

import pytest

from spanvisor.cli.main import build_parser, main
from spanvisor.config import Config, p_size
from spanvisor.logs import JsonFormatter
from spanvisor.spans import conventions as cv


@pytest.mark.parametrize(
    ("raw", "want"),
    [("2GB", 2_000_000_000), ("16MB", 16_000_000), ("64KB", 64_000), ("2GiB", 2 * 1024**3), ("1024", 1024)],
)
def test_sizes_take_decimal_and_binary_units(raw: str, want: int) -> None:
    assert p_size(raw) == want


@pytest.mark.parametrize("raw", ["0", "-1GB", "2TB", "GB", "nanMB"])
def test_bad_sizes_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        p_size(raw)


def test_json_log_times_are_rfc3339_with_milliseconds_and_zone() -> None:
    record = logging.LogRecord("spanvisor", logging.INFO, __file__, 1, "hello", None, None)
    doc = json.loads(JsonFormatter().format(record))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", doc["time"]), doc["time"]


def test_emit_artifact_with_only_a_uri_is_named_after_its_last_part(tmp_path: object) -> None:
    from spanvisor.cli.emit_spans import build_spans

    args = build_parser().parse_args(["emit", "artifact", "--task", "T-1", "--uri", "s3://bucket/reports/out.md"])
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)})
    (span,) = build_spans(args, config, 1_000_000_000)
    (event,) = span.events
    assert event.name == cv.EVENT_ARTIFACT
    assert dict(event.attributes or {}) == {cv.ARTIFACT_NAME: "out.md", cv.ARTIFACT_URI: "s3://bucket/reports/out.md"}


def test_emit_artifact_needs_a_name_or_a_uri(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emit", "artifact", "--task", "T-1"]) == 2
    assert "--name, --uri or both" in capsys.readouterr().err
