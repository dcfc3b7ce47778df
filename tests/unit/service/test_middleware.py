import logging

from pipeline.service.middleware import RedactFilter, RequestIdFilter, _incoming_request_id, request_id_var

SECRET = "tok-123456789"


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("pipeline.service", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


class TestRedactFilter:
    def test_secret_is_removed_from_message_args_and_fields(self) -> None:
        rec = record("GET %s %d", f"/jobs/{SECRET}", 401, path=f"/jobs/{SECRET}", status=401)
        assert RedactFilter([SECRET]).filter(rec)
        assert rec.getMessage() == "GET /jobs/[redacted] 401"
        assert rec.path == "/jobs/[redacted]" and rec.status == 401  # type: ignore[attr-defined]

    def test_no_secret_leaves_records_alone(self) -> None:
        rec = record("GET %s", "/status")
        assert RedactFilter([]).filter(rec) and RedactFilter([SECRET]).filter(rec)
        assert rec.msg == "GET %s" and rec.args == ("/status",)


def test_request_id_filter_uses_the_context() -> None:
    token = request_id_var.set("req-7")
    try:
        rec = record("x")
        RequestIdFilter().filter(rec)
        assert rec.request_id == "req-7"  # type: ignore[attr-defined]
        explicit = record("x", request_id="given")
        RequestIdFilter().filter(explicit)
        assert explicit.request_id == "given"  # type: ignore[attr-defined]
    finally:
        request_id_var.reset(token)


def test_incoming_request_id_must_be_short_and_plain() -> None:
    assert _incoming_request_id({"headers": [(b"x-request-id", b"abc-1.2_3")]}) == "abc-1.2_3"
    assert _incoming_request_id({"headers": [(b"x-request-id", b"a b")]}) is None
    assert _incoming_request_id({"headers": [(b"x-request-id", b"a" * 65)]}) is None
    assert _incoming_request_id({"headers": []}) is None
