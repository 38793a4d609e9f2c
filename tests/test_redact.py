"""Secrets inside camera sources (§7 of docs/interface.md), in process: `redact_source` is what status, the
log, the page and the placeholder picture show; `source_secrets` and `SecretMasker` are the log's
second net, masking the literal values wherever a log line or a traceback quotes them."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator

import pytest
from _pytest.mark import ParameterSet

from edge.redact import SecretMasker, redact_source, remember_secrets, source_secrets

SECRET_NAMES = ("password", "pass", "pwd", "token", "key", "secret", "auth", "signature")

# (source, what may be shown, the secret values that must not be)
USERINFO_CASES = [
    pytest.param("rtsp://admin@cam.local/live", "rtsp://***@cam.local/live", ["admin"], id="user-only"),
    pytest.param(
        "rtsp://admin:hunter2@192.168.1.20:554/Streaming/Channels/101",
        "rtsp://***@192.168.1.20:554/Streaming/Channels/101",
        ["hunter2", "admin:hunter2"],
        id="user-password",
    ),
    pytest.param(
        "rtsp://admin:p@ss:w0rd@cam.local/live",
        "rtsp://***@cam.local/live",
        ["p@ss:w0rd", "p@ss", "ss:w0rd"],
        id="password-with-at-and-colon",
    ),
    pytest.param(
        "http://viewer:p%40ss%3Aw0rd@cam.local/mjpg",
        "http://***@cam.local/mjpg",
        ["p%40ss%3Aw0rd", "p@ss:w0rd"],
        id="percent-encoded-password",
    ),
    pytest.param(
        "HTTP://Admin:Hunter2@[fe80::1]:8080/video",
        "HTTP://***@[fe80::1]:8080/video",
        ["Hunter2"],
        id="upper-case-scheme-ipv6-host",
    ),
]


def secret_parameter_cases(template: str, names: Iterable[str], id_prefix: str) -> list[ParameterSet]:
    """One case per parameter name: ``template`` with ``{name}={value}`` holding a secret, and the
    same URL with only that value masked."""
    return [
        pytest.param(
            template.format(name=name, value="s3cr3tValue9"),
            template.format(name=name, value="***"),
            ["s3cr3tValue9"],
            id=f"{id_prefix}-{name}",
        )
        for name in names
    ]


QUERY_CASES = [
    *secret_parameter_cases("http://cam.local/video.cgi?{name}={value}&resolution=640x480", SECRET_NAMES, "query"),
    *secret_parameter_cases(
        "https://bucket.example.com/cam.mjpg?X-Amz-Date=20260101T000000Z&{name}={value}",
        ("api_key", "access_token", "X-Amz-Signature", "client_secret", "oauth_token", "passwd"),
        "query",
    ),
    *secret_parameter_cases(
        "http://cam.local/snap?{name}={value}",
        ("PASSWORD", "Token", "ApiKey", "PWD", "x-amz-signature", "Auth"),
        "case",
    ),
    pytest.param(
        "rtsp://admin:hunter2@127.0.0.1:9/live?token=SECRET1234&pwd=abcd1234",
        "rtsp://***@127.0.0.1:9/live?token=***&pwd=***",
        ["hunter2", "SECRET1234", "abcd1234"],
        id="userinfo-and-two-parameters",
    ),
    pytest.param(
        "http://cam.local/a;password=zzzz9999#view",
        "http://cam.local/a;password=***#view",
        ["zzzz9999"],
        id="semicolon-parameter-and-fragment",
    ),
    pytest.param(
        "http://cam.local/mjpg?user=admin&pwd=abc",
        "http://cam.local/mjpg?user=admin&pwd=***",
        ["abc"],
        id="short-value-still-masked",
    ),
]

PIPE_CASES = [
    pytest.param(
        "pipe:ffmpeg -i rtsp://u:p4ss@h/x -f mjpeg -",
        "pipe:ffmpeg -i rtsp://***@h/x -f mjpeg -",
        ["p4ss", "u:p4ss"],
        id="pipe-url-userinfo",
    ),
    pytest.param(
        "pipe:ffmpeg -rtsp_transport tcp -i rtsp://cam.local/live?token=abcdef123456 -f mjpeg -q:v 5 -",
        "pipe:ffmpeg -rtsp_transport tcp -i rtsp://cam.local/live?token=*** -f mjpeg -q:v 5 -",
        ["abcdef123456"],
        id="pipe-url-token",
    ),
    pytest.param(
        "pipe:my-camera-tool --password=hunter2 --token=abcdef123456 --width=640",
        "pipe:my-camera-tool --password=*** --token=*** --width=640",
        ["hunter2", "abcdef123456"],
        id="pipe-name-value-arguments",
    ),
    pytest.param(
        "pipe:ffmpeg -i 'http://a:b1b2b3@cam.local/v?api_key=K3Y12345abc' -f mjpeg -",
        "pipe:ffmpeg -i 'http://***@cam.local/v?api_key=***' -f mjpeg -",
        ["b1b2b3", "K3Y12345abc"],
        id="pipe-quoted-url",
    ),
    # Credentials as command-line options (§7): -u/--user USER:PASSWORD, --password/--pass/--oauth2-bearer VALUE.
    pytest.param(
        "pipe:curl -s -u admin:hunter2pass http://cam.local/video.mjpg",
        "pipe:curl -s -u admin:*** http://cam.local/video.mjpg",
        ["hunter2pass"],
        id="pipe-curl-u",
    ),
    pytest.param("pipe:curl -uadmin:hunter2pass x", "pipe:curl -uadmin:*** x", ["hunter2pass"], id="pipe-curl-u-glued"),
    pytest.param(
        "pipe:curl --user=admin:hunter2pass x", "pipe:curl --user=admin:*** x", ["hunter2pass"], id="pipe-user-equals"
    ),
    pytest.param(
        "pipe:curl --user 'admin:my secret' x", "pipe:curl --user 'admin:***' x", ["my secret"], id="pipe-user-quoted"
    ),
    pytest.param(
        'pipe:tool --password "s3cret pw" --pass k3yphrase --oauth2-bearer eyJhbGciOi.x.y -o -',
        'pipe:tool --password "***" --pass *** --oauth2-bearer *** -o -',
        ["s3cret pw", "k3yphrase", "eyJhbGciOi.x.y"],
        id="pipe-whole-value-options",
    ),
]

UNCHANGED = [
    "virtual",
    "auto",
    "/dev/video0",
    "/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920-video-index0",
    "/home/pi/videos/passage.mp4",  # "pass" in a file name is no parameter
    "rtsp://cam.local:554/live?channel=1&subtype=0",
    "http://192.168.1.20/mjpg/video.mjpg?resolution=640x480&fps=15",
    "http://cam.local/?token=",  # nothing to hide
    "pipe:ffmpeg -f v4l2 -input_format mjpeg -i /dev/video0 -c:v copy -f mjpeg -",
    "pipe:ffmpeg -user_agent edge -i http://cam.local/v -f mjpeg -",  # -user_agent is no -u
    "pipe:curl -u admin http://cam.local/v",  # a user name alone: curl asks for the password
    "pipe:curl -u admin:${CAM_PASSWORD} http://cam.local/v",  # a reference is shown, not a secret
    "pipe:curl --password ${file:/run/secrets/cam} http://cam.local/v",
]


@pytest.mark.parametrize(("source", "shown", "secrets"), USERINFO_CASES + QUERY_CASES + PIPE_CASES)
def test_redact_source_masks_secrets(source: str, shown: str, secrets: list[str]) -> None:
    result = redact_source(source)
    assert result == shown
    for secret in secrets:
        assert secret not in result


@pytest.mark.parametrize("source", UNCHANGED)
def test_redact_source_leaves_sources_without_secrets_unchanged(source: str) -> None:
    assert redact_source(source) == source
    assert source_secrets(source) == set()


@pytest.mark.parametrize("index", [0, 1, 2, 10])
def test_integer_sources_are_unchanged(index: int) -> None:
    assert redact_source(index) == str(index)
    assert source_secrets(index) == set()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "rtsp://admin:hunter2@127.0.0.1:9/live?token=SECRET1234&pwd=abcd1234",
            {"hunter2", "admin:hunter2", "SECRET1234", "abcd1234"},
            id="userinfo-and-parameters",
        ),
        pytest.param("rtsp://admin:p@ss:w0rd@cam/live", {"p@ss:w0rd", "admin:p@ss:w0rd"}, id="at-and-colon"),
        # Both spellings: a library may quote the URL as written or decoded.
        pytest.param("http://viewer:p%40ss%3Aw0rd@cam/", {"p%40ss%3Aw0rd", "p@ss:w0rd"}, id="percent-encoded"),
        pytest.param("http://cam/v?X-Amz-Signature=deadbeefcafe", {"deadbeefcafe"}, id="signature"),
        pytest.param("http://cam/v?access_token=a%2Fb%2Fc%2Fd", {"a%2Fb%2Fc%2Fd", "a/b/c/d"}, id="encoded-token"),
        pytest.param("pipe:ffmpeg -i rtsp://u:p4ss@h/x -f mjpeg -", {"p4ss", "u:p4ss"}, id="pipe"),
    ],
)
def test_source_secrets_lists_the_literal_values(source: str, expected: set[str]) -> None:
    assert expected <= source_secrets(source)


def test_source_secrets_skips_values_too_short_to_mask_safely() -> None:
    """Masking "pw" or "u" in every log line would garble ordinary words; the status and the
    picture still show such values masked (redact_source), only the log's second net skips them."""
    found = source_secrets("rtsp://u:pw@cam/live?key=ab")
    assert "pw" not in found and "u" not in found and "ab" not in found
    assert redact_source("rtsp://u:pw@cam/live?key=ab") == "rtsp://***@cam/live?key=***"


# ------------------------------------------------------------------------------------------------
# SecretMasker: the log filter
# ------------------------------------------------------------------------------------------------

URL = "rtsp://admin:hunter2@127.0.0.1:9/live?token=SECRET1234&pwd=abcd1234"
LOGGED_SECRETS = ("hunter2", "SECRET1234", "abcd1234")


@pytest.fixture
def masked_log() -> Iterator[tuple[logging.Logger, io.StringIO, SecretMasker]]:
    """A logger whose handler carries a SecretMasker, as the server's handler does."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    masker = SecretMasker(source_secrets(URL))
    handler.addFilter(masker)
    logger = logging.getLogger("tests.redact.masked")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, out, masker
    finally:
        logger.handlers.clear()


def _assert_masked(text: str) -> None:
    for secret in LOGGED_SECRETS:
        assert secret not in text, f"{secret!r} in log output:\n{text}"


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        pytest.param("opening %s", (URL,), id="percent-arg"),
        pytest.param("opening %r", (URL,), id="repr-arg"),
        pytest.param("config: %s", ({"source": URL, "fps": 30},), id="dict-arg"),
        pytest.param("ffmpeg said: %s", ("401 Unauthorized for admin:hunter2",), id="userinfo-fragment"),
        pytest.param(f"no args: {URL}", (), id="in-message"),
        pytest.param("%s and %s", ("token SECRET1234", "pwd abcd1234"), id="two-args"),
    ],
)
def test_secret_masker_masks_values_in_messages_and_args(
    masked_log: tuple[logging.Logger, io.StringIO, SecretMasker], msg: str, args: tuple[object, ...]
) -> None:
    logger, out, _ = masked_log
    logger.info(msg, *args)
    text = out.getvalue()
    assert text.startswith("INFO tests.redact.masked "), "the record must still be emitted"
    assert "***" in text
    _assert_masked(text)


def test_secret_masker_masks_the_longest_match_first(
    masked_log: tuple[logging.Logger, io.StringIO, SecretMasker],
) -> None:
    """`admin:hunter2` goes as a whole: no `admin:***` half-mask revealing the user name."""
    logger, out, _ = masked_log
    logger.warning("cannot open %s", URL)
    text = out.getvalue()
    assert "rtsp://***@127.0.0.1:9/live?token=***&pwd=***" in text, text
    assert "admin:" not in text


def test_secret_masker_masks_tracebacks(masked_log: tuple[logging.Logger, io.StringIO, SecretMasker]) -> None:
    logger, out, _ = masked_log
    try:
        try:
            raise ConnectionError(f"connection to {URL} refused")
        except ConnectionError as exc:
            raise RuntimeError("source failed: token=SECRET1234") from exc
    except RuntimeError:
        logger.exception("capture failed for %s", "cam0")
    text = out.getvalue()
    assert "Traceback" in text and "ConnectionError" in text and "RuntimeError" in text
    assert text.count("***") >= 3
    _assert_masked(text)


def test_secret_masker_masks_exc_info_on_lower_levels(
    masked_log: tuple[logging.Logger, io.StringIO, SecretMasker],
) -> None:
    logger, out, _ = masked_log
    try:
        raise OSError(f"read timeout on {URL}")
    except OSError:
        logger.debug("retrying", exc_info=True)
    text = out.getvalue()
    assert "Traceback" in text and "OSError" in text
    _assert_masked(text)


def test_secret_masker_escapes_regex_characters_and_ignores_short_values() -> None:
    masker = SecretMasker(["p.s+w*rd(1)", "ab", ""])
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "a %s b %s c %s", ("p.s+w*rd(1)", "pXsswwrd1", "ab"), None
    )
    assert masker.filter(record) is True
    assert record.getMessage() == "a *** b pXsswwrd1 c ab"


def test_secret_masker_without_secrets_passes_records_unchanged() -> None:
    masker = SecretMasker()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "open %s", (URL,), None)
    assert masker.filter(record) is True
    assert record.msg == "open %s" and record.args == (URL,)


def test_secret_masker_set_secrets_replaces_the_list(
    masked_log: tuple[logging.Logger, io.StringIO, SecretMasker],
) -> None:
    logger, out, masker = masked_log
    masker.set_secrets(["n3wS3cr3t"])
    logger.info("old %s new %s", "hunter2", "n3wS3cr3t")
    assert out.getvalue().strip().endswith("old hunter2 new ***")


def test_secrets_remembered_later_are_masked_by_every_masker(
    masked_log: tuple[logging.Logger, io.StringIO, SecretMasker],
) -> None:
    """A source reads its ${...} references when it opens, in its capture thread, after logging
    was set up: from then on the values are masked like the configured ones."""
    logger, out, _ = masked_log
    logger.warning("before: s3cr3t-from-a-file")
    remember_secrets(["s3cr3t-from-a-file", "abc"])  # too short to mask safely: ignored
    logger.warning("after: s3cr3t-from-a-file and abc")
    lines = out.getvalue().splitlines()
    assert "s3cr3t-from-a-file" in lines[0]
    assert lines[1].endswith("after: *** and abc"), lines[1]
