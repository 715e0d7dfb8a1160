"""Logging set-up: readable lines for people, JSON lines (orjson) for production collectors."""

from __future__ import annotations

import logging
import sys

import orjson


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: ts (epoch seconds), level, logger, msg, and exc and stack
    if any."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(doc).decode()
        except orjson.JSONEncodeError:
            # A lone surrogate (a file name or argument decoded with surrogateescape): orjson
            # refuses it, and the record would be lost with a plain-text traceback in the
            # stream. Escaped as the plain formatter's stderr would, the record stays one line.
            clean = {
                k: v.encode("utf-8", "backslashreplace").decode() if isinstance(v, str) else v
                for k, v in doc.items()
            }
            return orjson.dumps(clean).decode()


def setup_logging(level: str = "INFO", json_lines: bool = False) -> None:
    """Configure the root logger once; later calls replace the handler."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonLinesFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
