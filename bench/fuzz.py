"""Bounded HTTP fuzzing of a real ``python -m botlite serve`` on loopback. Prints one
JSON line (progress on stderr).

What it measures: how many of ``--requests`` (12,000) mutated requests spread over
every route get a 5xx, and how many end in a connection error or a timeout (both
are failures: the goal is 0 of each), and whether ``/healthz`` still answers 200
afterwards.

The server: ``serve --port 0 --data-dir <fresh temp dir>`` with
``BOTLITE_MAX_UPLOAD_MB=--max-upload-mb`` (1, so an upload over the limit is cheap
to send) and no other ``BOTLITE_*`` setting; its stdout gives the ready line (port,
admin token), its stderr is read by a thread all along (the pipe never fills) and
kept in ``<temp dir>/server.log``, parsed into log records so a 5xx can be matched
with its traceback (``--keep`` keeps the temp dir).

Setup (counted in ``requests``, not mutated): bots ``fuzz-a`` and ``fuzz-b`` (the
latter with ``allowed_domains``) with ``rate_limit_per_minute`` 10000 (and the
``default`` bot raised to it), FAQs, a custom intent, three small uploads, a few
chat turns, a feedback, a notification, a delayed task, a schedule job and a
browser login (session cookie + CSRF token), so valid ids exist to aim at.

Routes: read from the ``@web.<method>("...")`` decorators of botlite/web/api.py
and pages.py (so a route added later shows up in ``routes_missed`` until this
file has a generator for it). Each of ``--clients`` (4) threads loops until the
request budget or ``--max-seconds`` is spent; each iteration is one of:

- a route generator (about 85 %, the routes picked uniformly): valid ids from
  the pools the setup and earlier answers filled (60 %) or bad ones (ints past
  2^63, unicode digits, percent-encoded junk, ``..``, NUL, 4,000 characters, an
  id of another kind); JSON bodies valid (30 %) or mutated (a field of the wrong
  type, null, negative / huge / 5,000-digit ints, NaN, floats, huge strings,
  lone surrogates, NUL, format strings such as ``{bot_name.__class__}``, extra
  or missing fields, nesting up to 100,000 deep, not an object, malformed or
  non-UTF-8 bytes, a BOM, duplicate keys, over 1 MiB) and sometimes a wrong
  Content-Type; query parameters valid or not (``limit=-1``, ``1e9``,
  ``status=junk``, ``period=junk``, repeated, 10,000 characters); uploads as
  hand-built multipart (odd file names with ``..``, NUL, newlines, invalid UTF-8,
  5,000 characters; empty, binary, fake PDF / DOCX, over the limit; no or a wrong
  boundary, a truncated body, no ``file`` field); about 8 % of them go out on a
  raw socket with an unencoded path or query (``/static/../app.py``, ``%ZZ``,
  ``\\xff``), which requests would normalise;
- a method the route does not take (5 %), an unknown path (3 %), or a request
  malformed at the HTTP level on a raw socket (7 %: headers over waitress's
  256 KiB limit, 2,000 headers, bad request lines, bad ``Content-Length``, broken
  or valid chunked bodies, odd ``Host`` headers, absolute-form targets). A
  ``Transfer-Encoding`` other than chunked is not sent: its 501 is documented.

Auth is mixed per request: the bearer token (also ``bearer`` / padded), the browser
session with its CSRF header, none, a wrong token (``Bearer x``, a prefix of the
real one, ``Basic``, non-ASCII bytes), a junk session cookie, the session without
its CSRF header. Pages get the session mostly; ``/``, ``/?token=``, ``/login``
and ``/logout`` get their own throwaway logins (the shared session is never
logged out). Wrong tokens, junk cookies and missing CSRF headers come from other
loopback addresses (127.1.<client>.<n>, 16 per client), so the login throttle's
lockouts (429, fine) never reach the good traffic from 127.0.0.1. Extra headers
now and then: ``Origin`` (allowed, other, malformed), ``X-Forwarded-*``,
``Range``, ``If-Modified-Since``, 8 KB ``User-Agent``, 200 extra headers.

Results: ``by_status`` counts status classes; every 5xx is matched with the
server's log record (``unhandled error in METHOD PATH`` or waitress's / bottle's
own) and deduplicated by (method, route, exception): ``server_errors`` holds up to
20, each with its count, the first request that triggered it and the last lines of
its traceback. ``connection_errors`` counts timeouts, resets and refusals
(``connection_error_kinds``, a few samples), except for the two HTTP-level cases a
server may rightly leave unanswered (bare-LF line ends: the headers never end; a
declared 2^64-byte chunk: it waits for the body), which get a 3 s wait and are
counted in ``unanswered_as_allowed``. ``unattributed_log_errors`` are ERROR
records with no 5xx (task workers, the turn log writer...). ``endpoints_covered`` is
the number of route templates (method + path) that got at least one answer,
``requests_per_route_min`` the fewest any covered route got. At the end:
``/healthz`` (``healthy_after``: 200 with status ok), then SIGTERM and the server's
exit code.

Each client has its own ``random.Random`` seeded from ``--seed`` and its index:
with ``--clients 1`` the request sequence is the same from run to run (ids the
server makes aside).

    python bench/fuzz.py [--requests 12000] [--seed 1] [--clients 4] [--timeout 30]
                         [--max-seconds 900] [--max-upload-mb 1] [--keep]
"""
import os
import sys

# As a script, this folder comes first on sys.path, and bench/queue.py would shadow
# the standard library's queue.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
ROOT = os.path.dirname(_HERE)

import argparse  # noqa: E402
import collections  # noqa: E402
import http.cookiejar  # noqa: E402
import json  # noqa: E402
import queue  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from urllib.parse import quote, unquote, urlencode  # noqa: E402

import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

READY = re.compile(r"is ready: http://([^/\s:]+):(\d+)/\?token=(\S+)")
LOG_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ([A-Z]+) (\S+): ?(.*)$")
ROUTE_DECORATOR = re.compile(r"@web\.(get|post|delete|put|patch|route)\(\s*[\"']([^\"']+)"
                             r"[\"']([^)]*)\)")
GOOD_ADDRESS = "127.0.0.1"
BAD_ADDRESSES_PER_CLIENT = 16
ERROR_LEVELS = ("ERROR", "CRITICAL", "UNCAUGHT")
WEB_ERROR_WORDS = ("unhandled error", "Exception while serving", "Exception when serving")
MAX_SERVER_ERRORS = 20
PROGRESS_EVERY = 1000


def log(message, *args):
    print("fuzz: " + (message % args if args else message), file=sys.stderr, flush=True)


# -- vocabulary ------------------------------------------------------------------------

BIG_INTS = [2 ** 31, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 40]
FLOATS = [0.5, -0.0, 1.5, 1e308, -1e308, 5e-324, float("inf"), float("-inf"), float("nan")]
UNICODE = ["é", "日本語のテキスト", "😀😀😀", "\u202egnp.exe", "\u200b", "e\u0301\u0301",
           "\ufeff", "\uffff", "\U0010ffff", "\x7f", "Ω≈ç√∫", "ﷺ", "𝕬𝖇𝖈", "١٢٣",
           "Ⅻ", "ß" * 50]
NASTY = ["\u0000", "a\u0000b", "\ud800", "\udfff", "x\udc80y", "\ud83d", "\r\n", "\t", "\x1b[31m",
         "<script>alert(1)</script>", "' OR 1=1 --", "\"; DROP TABLE chatbot; --", "%s%s%n",
         "{bot_name}", "{0}", "{bot_name.__class__}", "{bot_name!r:>99999}", "{", "}", "{{}}",
         "{__import__}", "${jndi:ldap://x.invalid/a}", "../../../etc/passwd",
         "C:\\Windows\\win.ini", "null", "NaN", "1e999", " ", "", "\\", "%00", "%ff"]
JUNK_IDS = ["0", "-1", "1", "00001", str(2 ** 63 - 1), str(2 ** 63), str(2 ** 64 + 1),
            "-" + str(2 ** 63 + 1), "9" * 400, "1e9", "1.5", "0x1f", " 1", "1 ", "+1",
            "١٢٣", "௧", "𝟘𝟙", "½", "²", "NaN", "inf", "null", "true", "a" * 65, "a" * 4000,
            "ÄÖÜ", "😀", "\u202e", "default\u0000", "\u0000", "%", "%25", "..", ".", "../..",
            "..\\..\\", "/etc/passwd", "' OR '1'='1", "<script>", "${jndi:x}", "{}", "[]", "*",
            "~", "default/../fuzz-a", "\ud800", "a/b", "?", "#", ";", "DEFAULT", "fuzz-a\n"]
RAW_SEGMENTS = [b"..", b"%ZZ", b"%", b"%f", b"%ff%fe", b"%ED%A0%80", b"\xff", b"%00",
                b"a%2F..%2F..", b"", b"%2e%2e", b"..%2f..%2f", b".%00.", b"%C0%AE%C0%AE",
                b"\xc3\x28", b"a b", b"a\tb", b"~%7e", b"%u0041", b"%%32%65"]
RAW_QUERIES = [b"limit=%ZZ", b"limit=%ff", b"a=%00", b"&&&", b"=", b"limit", b"limit[]=1",
               b"limit=1&limit=x", b"period=%E2%80%AE7d", b"%=%", b"limit=\xff",
               b"token=%ff", b"next=%0d%0aSet-Cookie:x=1", b"status=%00SUCCESS",
               b"x=" + b"a" * 9000, b"limit=1;2", b"crontab=*+*+*+*+*&count=%ZZ"]
LIMITS = ["1", "50", "500", "1000", "0", "-1", "1e9", "999999999999999999999", "abc", "",
          " 5", "5 ", "0x10", "NaN", "inf", "١٠", "1.5", "9" * 5000, "-0", "+3"]
PERIODS = ["7d", "30d", "90d", "1d", "junk", "", "7D", "7d ", "0d", "-7d", "9" * 100 + "d", "٧d"]
BOOLS = ["1", "0", "true", "false", "yes", "no", "maybe", "", "TRUE", "2", "ON", "1 "]
STATUSES = ["PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "success",
            "junk", "", "FAILURE,SUCCESS", "%", "\u0000"]
ORIGINS = ["https://example.com", "http://example.com:8080", "https://a.shop.example",
           "https://secure.example:8443", "http://localhost:8080", "https://evil.example",
           "null", "file://", "http://", "http://[::1", "https://example.com.evil.example",
           "HTTPS://EXAMPLE.COM", "https://example.com/", "https://xn--e1afmkfd.example",
           "https://ex%61mple.com", "*", "https://" + "a" * 3000 + ".example",
           "https://exa\u00e9mple.com", "http://127.0.0.1:1"]
DOMAINS = ["example.com", "*.shop.example", "https://secure.example:8443", "localhost:8080",
           "*", "", "http://", "*.*", "exa mple.com", "ex\u0000ample.com", "a" * 300,
           "https://example.com/path?q=1", "xn--e1afmkfd.example", "日本.example"]
URLS = ["http://127.0.0.1/", "http://localhost:1/", "http://10.0.0.1/", "http://[::1]/",
        "http://169.254.169.254/latest/meta-data", "ftp://docs.invalid/", "javascript:alert(1)",
        "http://user:pw@docs.invalid/", "http://docs.invalid/", "https://docs.invalid/a?b=c#d",
        "http://" + "a" * 300 + ".invalid/", "http://exa mple.invalid/",
        "http://xn--nxasmq6b.invalid/", "http://例え.invalid/", "http://0x7f.1/",
        "http://2130706433/", "http://[::ffff:127.0.0.1]/", "http://0/", "http:///path",
        "http://:80/", "", "http://127.0.0.1:99999/", "http://[fe80::1%25eth0]/",
        "http://192.168.0.1:8080/x", "https://docs.invalid:0/", "http://docs.invalid:-1/",
        "http://\u0000.invalid/", "//docs.invalid/", "docs.invalid", "http://[::]/",
        "http://100.64.0.1/", "http://224.0.0.1/", "HTTP://LOCALHOST/"]
WEBHOOKS = [None, "", "http://127.0.0.1:9/hook", "http://hooks.invalid/x",
            "https://user:pw@hooks.invalid/", "ftp://hooks.invalid/", "not a url",
            "http://10.1.2.3/hook", "https://" + "h" * 500 + ".invalid/"]
CRONTABS = ["* * * * *", "*/5 * * * *", "0 3 * * *", "0 0 29 2 *", "0 0 31 2 *", "0 0 30 2 *",
            "60 * * * *", "* 25 * * *", "*/0 * * * *", "1-0 * * * *", "5-1 * * * *",
            "* * * * * *", "", "@daily", "@reboot", "*/999999999999 * * * *", "0-59/2 * * * *",
            "0 0 * * 7", "0 0 * * 8", "0 0 1 13 *", "a b c d e", "١ * * * *",
            "1,2,,3 * * * *", "-1 * * * *", "9" * 40 + " * * * *", "* * * *", "0 0 0 * *",
            "0 0 * * MON", "0 0 L * *", "*/" + "9" * 5000 + " * * * *", "0 0 1-31/31 * *",
            "0 0 31 4,6,9,11 *", "\u0000 * * * *", "* * * * *\n* * * * *", "   "]
TASK_CALLS = [("health_check", []), ("update_analytics", []), ("expire_results", []),
              ("generate_analytics_report", ["fuzz-a", "7d"]),
              ("generate_analytics_report", ["default"]),
              ("send_notification", ["admin", "Fuzz", "hello"]),
              ("send_notification", ["fuzzer", "T", "m", "warning"]),
              ("cleanup_temp_files", [6]), ("generate_reports", [1]), ("recover_sources", []),
              ("resync_websites", []), ("no_such_task", []), ("", []),
              ("process_document", ["nope"]), ("scrape_website", ["nope"]),
              ("process_user_action", ["fuzz-a", "s1", None, "bogus"]),
              ("notify_source_ready", ["nope", "nope"]), ("cleanup_old_data", [3650])]
QUEUES = ["default", "documents", "websites", "notifications", "high_priority",
          "low_priority"]
STATIC_FILES = ["app.css", "app.js", "widget.js"]
STATIC_JUNK = ["", ".", "..", "../app.py", "../../app.py", "..%2fapp.py", "templates/base.tpl",
               "../templates/base.tpl", "/etc/passwd", "app.css/", "app.css%00.js",
               "APP.CSS", "app.css.bak", "a" * 300, "日本.css", "%2e%2e/%2e%2e/app.py",
               "....//....//app.py", "app.js?x", "\u0000", "static/app.css", "./app.css"]
NEXT_TARGETS = ["/", "/bots/fuzz-a", "/tasks?status=FAILURE", "//evil.example", "/\tevil",
                "https://evil.example", "/%0d%0aSet-Cookie:x=1", "/" + "a" * 5000,
                "/日本", "javascript:alert(1)", "\\\\evil.example", "/\\evil.example", "",
                "/\u0000", "http:/evil.example", "/login?next=//evil.example", " /"]
QUESTIONS = ["How long does shipping take?", "What is the refund policy?", "hello", "thanks",
             "who are you", "help", "where is my order", "track my package",
             "Do you sell llamas?", "opening hours", "hello world program in python", "bye",
             "What does the manual say about widgets?", "refund", "shipping to Norway"]
NAMES = ["Fuzz", "Help Desk", "日本語ボット", "😀 bot", "a", "Support"]
TEXT_WORDS = ("widget manual shipping refund policy order parcel invoice warranty battery "
              "charger display settings account password reset delivery return exchange "
              "store hours opening support ticket email phone").split()


def junk_string(rng):
    r = rng.random()
    if r < 0.25:
        return "x" * rng.choice([65, 201, 2001, 4001, 10000, 100000])
    if r < 0.45:
        return rng.choice(UNICODE) * rng.choice([1, 3, 100])
    if r < 0.7:
        return rng.choice(NASTY)
    if r < 0.85:
        pool = [(0x20, 0x7e), (0xa0, 0x2ff), (0x400, 0x4ff), (0x3040, 0x30ff),
                (0xd800, 0xdfff), (0x1f600, 0x1f64f), (0x0, 0x1f), (0xfff0, 0xffff)]
        out = []
        for _ in range(rng.randint(1, 40)):
            low, high = rng.choice(pool)
            out.append(chr(rng.randint(low, high)))
        return "".join(out)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 -_") for _ in
                   range(rng.randint(1, 60)))


def nested(depth, leaf="x"):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def junk_value(rng):
    r = rng.random()
    if r < 0.12:
        return rng.choice([None, True, False])
    if r < 0.28:
        return rng.choice([0, -1, 1, -(2 ** 31)] + BIG_INTS)
    if r < 0.36:
        return rng.choice(FLOATS)
    if r < 0.64:
        return junk_string(rng)
    if r < 0.78:
        return rng.choice([[], {}, [junk_string(rng)], {"k": junk_string(rng)}, ["a"] * 1000,
                           list(range(100)), [None], [[]], [{"a": 1}], [1, "a", None, 1.5]])
    if r < 0.84:
        return nested(rng.choice([3, 30, 300]))
    return rng.choice(NASTY)


def extra_key(rng):
    return rng.choice(["extra", "", "__proto__", "constructor", "id", "chatbot_id", "k" * 500,
                       "日本", "\u0000", "\ud800", "name ", "Name", "admin", "is_admin"])


def dumps(value, rng=None):
    """JSON bytes; sometimes with raw (non-ASCII) characters, lone surrogates as
    invalid UTF-8 bytes."""
    if rng is not None and rng.random() < 0.3:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()


RAW_JSON = [b"", b" ", b"\n\t ", b"{", b"}", b'{"name": }', b"{'name': 'x'}", b'{"name": "x",}',
            b"\xff\xfe{\x00}", b"null", b"NaN", b"[" * 10, b"\x00" * 10, b'{"a":1}{"b":2}',
            b'{"name":"\\ud800"}', b'{"name":"\\u0000"}', b'{"name": 1e99999}',
            b'{"name": -0}', b'{"rate_limit_per_minute": ' + b"9" * 5000 + b"}",
            b'{"name": "\xc3\x28"}', b'{"name": "' + b"\\" * 3 + b'"}', b"\"just a string\"",
            b"123", b"true", b"[]", b'{"name": "a" "b"}', b'{"name": "x"}\x00', b"{}"]


def json_variant(rng, valid):
    """(body bytes, note): the valid body (30 %) or a mutation of it."""
    r = rng.random()
    if r < 0.30:
        return dumps(valid, rng), "valid body"
    body = dict(valid)
    keys = list(body)
    if r < 0.46 and keys:
        key = rng.choice(keys)
        body[key] = junk_value(rng)
        return dumps(body, rng), "field %s mutated" % key
    if r < 0.55 and keys:
        key = rng.choice(keys)
        del body[key]
        return dumps(body, rng), "field %s missing" % key
    if r < 0.61:
        body[extra_key(rng)] = junk_value(rng)
        return dumps(body, rng), "extra field"
    if r < 0.69:
        for key in keys:
            if rng.random() < 0.5:
                body[key] = junk_value(rng)
        return dumps(body, rng), "several fields mutated"
    if r < 0.75:
        whole = rng.choice([[], [valid], "str", 1, None, True, 1.5, [[]]])
        return dumps(whole), "not an object"
    if r < 0.87:
        raw = rng.choice(RAW_JSON + [dumps(valid)[:-2], b"\xef\xbb\xbf" + dumps(valid),
                                     json.dumps(valid).encode("utf-16"),
                                     json.dumps(valid).encode("utf-32")])
        return raw, "raw body %r" % raw[:24]
    if r < 0.93:
        depth = rng.choice([100, 1000, 100000])
        return (b'{"name": ' + b"[" * depth + b"]" * depth + b"}"), "nested %d deep" % depth
    if r < 0.95:
        body["name"] = "x" * ((1 << 20) + 10)
        return dumps(body), "over 1 MiB"
    if keys:
        key = rng.choice(keys)
        text = dumps(body).decode()
        return (text[:-1] + ", %s: %s}" % (json.dumps(key), json.dumps(junk_value(rng)))
                ).encode("utf-8", "surrogatepass"), "duplicate key %s" % key
    return b"{}", "empty object"


def content_type(rng):
    if rng.random() < 0.82:
        return "application/json"
    return rng.choice([None, "text/plain", "application/x-www-form-urlencoded",
                       "multipart/form-data", "multipart/form-data; boundary=zzz",
                       "application/json; charset=latin-1", "application/xml", "a/b; c=d; ;;",
                       "application/json, text/html", "APPLICATION/JSON", ""])


def text_document(rng, words=120):
    lines = ["# %s %s" % (rng.choice(TEXT_WORDS).title(), rng.randrange(10 ** 6)), ""]
    for _ in range(max(1, words // 12)):
        lines.append(" ".join(rng.choice(TEXT_WORDS) for _ in range(12)) + ".")
    return "\n".join(lines).encode()


FILENAMES = [b"notes.md", b"notes.txt", b"../../etc/passwd.txt", b"..\\..\\win.ini.txt",
             b"a\x00b.txt", b"a\nb.txt", b"a\rb.md", b"\xff\xfe.txt",
             "日本語.md".encode(), b"x" * 300 + b".txt", b"x" * 5000 + b".md", b"", b".md",
             b"noext", b"file.pdf", b"file.exe", b"file.docx", b"CON.txt", b'quo"te.txt',
             b"semi;colon.txt", b"%00.txt", b"file.md ", b"file.MD", b"x.tar.gz", b"data.csv",
             b"page.html", b"sheet.xlsx", b"/abs/path.txt", b"C:\\x\\y.txt", b"a\tb.txt",
             "e\u0301.txt".encode(), b"\x7f.txt", b"..", b"."]


def file_payload(rng, filename):
    """Content for an upload named ``filename``: usually what the name says."""
    r = rng.random()
    lower = filename.lower()
    if r < 0.08:
        return b"", "empty file"
    if r < 0.14:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 4000))), "random bytes"
    if r < 0.18:
        return b"%PDF-1.4\n1 0 obj <<>> endobj\n" + bytes(rng.randrange(256) for _ in range(300)), \
            "fake pdf"
    if r < 0.22:
        return b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(500)), "fake zip"
    if r < 0.24:
        return b"x" * (1200 * 1024), "over the upload limit"
    if r < 0.27:
        return "héllo wörld\n".encode("utf-16") * 20, "utf-16 text"
    if r < 0.30:
        return b"text with \x00 NUL \x00 bytes\n" * 10, "NUL bytes"
    if lower.endswith(b".csv"):
        return b"question,answer\n" + b"\n".join(
            b"%s,%s" % (rng.choice(TEXT_WORDS).encode(), rng.choice(TEXT_WORDS).encode())
            for _ in range(20)) + b'\n"unterminated,quote\n', "csv"
    if lower.endswith(b".html"):
        return b"<html><head><title>T</title><script>x()</script></head><body><p>" + \
            text_document(rng) + b"</p></body></html>", "html"
    return text_document(rng), "text"


def multipart(rng, parts, boundary=None):
    """Hand-built multipart/form-data: parts are (name, filename or None, content
    type or None, data), every header byte as given."""
    boundary = boundary or ("fuzz%016x" % rng.getrandbits(64)).encode()
    out = []
    for name, filename, ctype, data in parts:
        header = b'Content-Disposition: form-data; name="' + name + b'"'
        if filename is not None:
            header += b'; filename="' + filename + b'"'
        if ctype:
            header += b"\r\nContent-Type: " + ctype
        out.append(b"--" + boundary + b"\r\n" + header + b"\r\n\r\n" + data + b"\r\n")
    out.append(b"--" + boundary + b"--\r\n")
    return b"".join(out), "multipart/form-data; boundary=" + boundary.decode("latin-1")


# -- the server ------------------------------------------------------------------------

class ServerLog:
    """The server's stderr as log records: {level, logger, message, lines}."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.records = []
        self.claimed = set()
        self.file = open(path, "w", encoding="utf-8", errors="replace")

    def feed(self, line, parse=True):
        line = line.rstrip("\r\n")
        match = LOG_START.match(line)
        with self.lock:
            try:
                self.file.write(line + "\n")
                self.file.flush()
            except ValueError:
                pass
            if not parse:
                return
            if match:
                self.records.append({"level": match.group(1), "logger": match.group(2),
                                     "message": match.group(3), "lines": [line]})
            elif line.startswith("Exception in thread") or not self.records:
                self.records.append({"level": "UNCAUGHT", "logger": "-", "message": line,
                                     "lines": [line]})
            elif len(self.records[-1]["lines"]) < 400:
                self.records[-1]["lines"].append(line)

    def mark(self):
        with self.lock:
            return len(self.records)

    def claim(self, mark, method, path, wait):
        """The first unclaimed error record since ``mark`` that is most likely this
        request's (same method and path, else a web error, else any), waiting up
        to ``wait`` seconds for it to be read."""
        deadline = time.monotonic() + wait
        wanted = "%s %s" % (method, path)
        while True:
            with self.lock:
                candidates = [(i, r) for i, r in enumerate(self.records[mark:], mark)
                              if i not in self.claimed and is_error(r)]
                best = None
                for rank, test in enumerate((
                        lambda r: wanted in r["message"],
                        lambda r: any(w in r["message"] for w in WEB_ERROR_WORDS))):
                    for i, record in candidates:
                        if test(record):
                            best = (i, record)
                            break
                    if best:
                        break
                if best and len(best[1]["lines"]) > 1 or best and time.monotonic() > deadline:
                    self.claimed.add(best[0])
                    return best[1]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def unclaimed_errors(self):
        with self.lock:
            return [r for i, r in enumerate(self.records)
                    if i not in self.claimed and is_error(r)]

    def close(self):
        with self.lock:
            self.file.close()


def is_error(record):
    return record["level"] in ERROR_LEVELS or any(
        "Traceback (most recent call last)" in line for line in record["lines"])


def exception_of(record):
    """(exception type, traceback summary) of a log record: the last frames in
    botlite's own code (file, line, function and source line), then the last
    frames and the exception line, carets dropped."""
    lines = [line for line in record["lines"] if line.strip().strip("^~ ")]
    starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    if not starts:
        return "no traceback: " + record["message"][:120], lines[:3]
    last = next((line for line in reversed(lines) if line.strip() and not line.startswith(" ")),
                lines[-1])
    name = last.split(":", 1)[0].strip()
    own = os.path.join(ROOT, "botlite") + os.sep
    frames = []
    for i, line in enumerate(lines[starts[-1]:], starts[-1]):
        if line.lstrip().startswith('File "' + own):
            code = lines[i + 1].strip() if i + 1 < len(lines) and \
                not lines[i + 1].lstrip().startswith("File ") else ""
            frames.append("%s | %s" % (line.strip().replace(ROOT + os.sep, ""), code))
    tail = [line.strip()[:300] for line in lines[-5:]]
    return name, ["botlite: " + f[:300] for f in frames[-4:]] + ["tail:"] + tail


class Server:
    def __init__(self, data_dir, env, server_log):
        self.server_log = server_log
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "botlite", "serve", "--port", "0", "--data-dir", data_dir],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.stdout_lines = queue.Queue()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stderr(self):
        for raw in self.popen.stderr:
            self.server_log.feed(raw.decode("utf-8", "replace"))

    def _read_stdout(self):
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", "replace")
            self.stdout_lines.put(line)
            self.server_log.feed("[stdout] " + line, parse=False)

    def wait_ready(self, timeout=60.0):
        """(host, port, token) from the ready line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.stdout_lines.get(timeout=0.1)
            except queue.Empty:
                if self.popen.poll() is not None:
                    raise RuntimeError("serve exited with %s before it was ready"
                                       % self.popen.returncode)
                continue
            match = READY.search(line)
            if match:
                return match.group(1), int(match.group(2)), match.group(3)
        raise RuntimeError("serve printed no ready line within %ss" % timeout)

    def alive(self):
        return self.popen.poll() is None

    def stop(self, timeout=30.0):
        """SIGTERM, wait; SIGKILL its process group if it does not stop. The exit
        code, or None when it had to be killed."""
        code = self.popen.poll()
        if code is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                code = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log("serve did not stop within %ss of SIGTERM: killed", timeout)
                code = None
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        return code


# -- transport -------------------------------------------------------------------------

class NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Sessions keep no cookies: every request says which it sends."""

    def set_ok(self, cookie, request):
        return False

    def return_ok(self, cookie, request):
        return False


class BoundAdapter(HTTPAdapter):
    """Connections from one loopback source address."""

    def __init__(self, source_ip, **kwargs):
        self.source_ip = source_ip
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        pool_kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def make_session(source_ip):
    session = requests.Session()
    session.cookies.set_policy(NoCookies())
    session.trust_env = False  # no proxies from the environment: loopback only
    adapter = BoundAdapter(source_ip, pool_connections=1, pool_maxsize=2, max_retries=0)
    session.mount("http://", adapter)
    return session


class Resp:
    def __init__(self, status, headers, content, cookies):
        self.status, self.headers, self.content, self.cookies = status, headers, content, cookies

    def json(self):
        try:
            value = json.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def text(self):
        return self.content.decode("utf-8", "replace")


def parse_raw_response(buf):
    head, _, body = buf.partition(b"\r\n\r\n")
    while re.match(rb"HTTP/\d\.\d 1\d\d ", head) and b"\r\n\r\n" in body:
        head, _, body = body.partition(b"\r\n\r\n")  # an interim 100 Continue
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    status = int(parts[1])
    headers, cookies = {}, {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.decode("latin-1").strip().lower()
        value = value.decode("latin-1").strip()
        headers[name] = value
        if name == "set-cookie":
            key, _, rest = value.partition("=")
            cookies[key.strip()] = rest.split(";", 1)[0]
    return Resp(status, headers, body, cookies)


def raw_exchange(host, port, source_ip, data, timeout):
    """Send ``data`` on a new connection, read the response until the server closes
    (every raw request says Connection: close) or its Content-Length is in."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    buf = b""
    send_error = None
    try:
        sock.bind((source_ip, 0))
        sock.connect((host, port))
        try:
            sock.sendall(data)
        except OSError as exc:  # the server answered (and closed) before reading it all
            send_error = exc
        while len(buf) < 8 * 1024 * 1024:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                if buf:
                    break
                raise
            except OSError:
                if buf:
                    break
                raise send_error or sys.exc_info()[1]
            if not chunk:
                break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            while sep and re.match(rb"HTTP/\d\.\d 1\d\d ", head):  # 100 Continue
                head, sep, body = body.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
                if length and len(body) >= int(length.group(1)):
                    break
    finally:
        sock.close()
    if not buf.startswith(b"HTTP/"):
        raise ConnectionError("no HTTP response (%r; got %r)" % (send_error, buf[:60]))
    return parse_raw_response(buf)


def error_kind(exc):
    if isinstance(exc, (requests.exceptions.Timeout, socket.timeout)):
        return "timeout"
    text = repr(exc)
    if "refused" in text.lower():
        return "refused"
    if any(word in text for word in ("reset", "RemoteDisconnected", "aborted", "BrokenPipe",
                                     "Broken pipe", "no HTTP response")):
        return "reset"
    return "other"


class Req:
    def __init__(self, method, route, path, query=None, headers=None, body=None, auth="none",
                 note="", raw=False, raw_bytes=None, cover=True, bad_address=False,
                 may_go_unanswered=False):
        self.method, self.route, self.path, self.query = method, route, path, query
        self.headers = dict(headers or {})
        self.body, self.auth, self.note, self.raw, self.raw_bytes = body, auth, note, raw, raw_bytes
        self.cover, self.bad_address = cover, bad_address
        # HTTP-level cases a server may rightly leave unanswered (a body it still
        # waits for, a request whose headers never end): a short wait, and no
        # answer is counted apart, not as a connection error.
        self.may_go_unanswered = may_go_unanswered

    def target_text(self):
        path = self.path if isinstance(self.path, str) else self.path.decode("latin-1")
        if self.query:
            query = self.query.decode("latin-1") if isinstance(self.query, bytes) \
                else urlencode(self.query)
            path += "?" + query
        return path

    def describe(self):
        if self.raw_bytes is not None:
            return {"raw": self.raw_bytes[:300].decode("latin-1"), "note": self.note}
        body = self.body or b""
        out = {"method": self.method, "target": self.target_text()[:300], "auth": self.auth,
               "note": self.note}
        ctype = next((v for k, v in self.headers.items() if k.lower() == "content-type"), None)
        if ctype:
            out["content_type"] = ctype if isinstance(ctype, str) else ctype.decode("latin-1")
        if body:
            out["body"] = body[:300].decode("utf-8", "replace")
            out["body_bytes"] = len(body)
        extra = [k for k in self.headers if k.lower() not in (
            "content-type", "authorization", "cookie", "x-csrf-token")]
        if extra:
            out["headers"] = {k: (v if isinstance(v, str) else v.decode("latin-1"))[:120]
                              for k, v in list(self.headers.items())[:6] if k in extra}
        return out


# -- counts ----------------------------------------------------------------------------

class Stats:
    def __init__(self, server_log, budget):
        self.lock = threading.Lock()
        self.server_log = server_log
        self.budget = budget
        self.sent = 0
        self.by_status = collections.Counter()
        self.codes = collections.Counter()
        self.per_route = collections.Counter()
        self.covered = set()
        self.errors = {}  # (method, route, exception) -> entry
        self.conn_kinds = collections.Counter()
        self.unanswered = collections.Counter()
        self.conn_samples = []
        self.started = time.monotonic()

    def take(self):
        """Reserve one request of the budget; False when it is spent."""
        with self.lock:
            if self.sent >= self.budget:
                return False
            self.sent += 1
            sent = self.sent
        if sent % PROGRESS_EVERY == 0:
            with self.lock:
                log("%d requests, %.0fs: %s, %d conn errors, %d distinct 5xx", sent,
                    time.monotonic() - self.started, dict(self.by_status),
                    sum(self.conn_kinds.values()), len(self.errors))
        return True

    def response(self, req, resp, mark):
        key = (req.method, req.route)
        with self.lock:
            self.by_status["%dxx" % (resp.status // 100)] += 1
            self.codes[resp.status] += 1
            self.per_route[key] += 1
            if req.cover:
                self.covered.add(key)
        if resp.status >= 500:
            self.server_error(req, resp, mark)

    def server_error(self, req, resp, mark):
        path = req.path if isinstance(req.path, str) else req.path.decode("latin-1")
        quick = resp.status in (503, 507) and req.route == "/healthz"
        record = self.server_log.claim(mark, req.method, unquote(path), 0.3 if quick else 1.5)
        if record is not None:
            exception, tail = exception_of(record)
        else:
            exception, tail = "no log record", []
        key = (req.method, req.route, exception)
        with self.lock:
            entry = self.errors.get(key)
            if entry is None:
                entry = self.errors[key] = {
                    "method": req.method, "route": req.route, "status": resp.status,
                    "exception": exception, "count": 0, "request": req.describe(),
                    "response": resp.content[:200].decode("utf-8", "replace"),
                    "log": record["message"][:200] if record else None,
                    "traceback": tail}
                log("5xx: %s %s -> %d %s", req.method, req.route, resp.status, exception)
            entry["count"] += 1

    def connection_error(self, req, exc):
        kind = error_kind(exc)
        if req.may_go_unanswered:
            with self.lock:
                self.unanswered["%s (%s)" % (req.note, kind)] += 1
            return
        with self.lock:
            self.conn_kinds[kind] += 1
            self.per_route[(req.method, req.route)] += 1
            if len(self.conn_samples) < 8:
                self.conn_samples.append({"kind": kind, "route": req.route,
                                          "request": req.describe(), "error": repr(exc)[:200]})
        log("connection error (%s) on %s %s: %r", kind, req.method, req.route, exc)


# -- the fuzzer ------------------------------------------------------------------------

class State:
    """Ids known to exist (pools) and the ones the setup made (protected: never
    deleted on purpose)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pools = collections.defaultdict(list)
        self.protected = collections.defaultdict(set)

    def add(self, kind, value, protect=False):
        if value is None:
            return
        with self.lock:
            pool = self.pools[kind]
            if value not in pool:
                pool.append(value)
                if len(pool) > 400:
                    for i, old in enumerate(pool):
                        if old not in self.protected[kind]:
                            del pool[i]
                            break
            if protect:
                self.protected[kind].add(value)

    def pick(self, kind, rng):
        with self.lock:
            pool = self.pools[kind]
            return rng.choice(pool) if pool else None

    def take(self, kind, rng):
        """An unprotected id, removed from the pool (it is about to be deleted)."""
        with self.lock:
            free = [v for v in self.pools[kind] if v not in self.protected[kind]]
            if not free:
                return None
            value = rng.choice(free)
            self.pools[kind].remove(value)
            return value

    def discard(self, kind, value):
        with self.lock:
            if value in self.pools[kind] and value not in self.protected[kind]:
                self.pools[kind].remove(value)


AUTH_MIX = {
    "admin": [("admin", 62), ("browser", 8), ("browser-nocsrf", 4), ("none", 9), ("bad", 9),
              ("badcookie", 4), ("admin+badcookie", 4)],
    "public": [("none", 70), ("admin", 12), ("browser", 6), ("bad", 6), ("badcookie", 6)],
    "page": [("browser", 72), ("none", 10), ("badcookie", 8), ("admin", 5), ("bad", 5)],
}
BAD_AUTHS = ("bad", "badcookie", "browser-nocsrf", "admin+badcookie")
GENERATORS = {}


def route(method, template):
    def register(fn):
        GENERATORS[(method, template)] = fn
        return fn
    return register


def pick_weighted(rng, pairs):
    total = sum(w for _, w in pairs)
    r = rng.uniform(0, total)
    for value, weight in pairs:
        r -= weight
        if r <= 0:
            return value
    return pairs[-1][0]


class Fuzzer:
    def __init__(self, ctx, index, seed):
        self.ctx = ctx
        self.rng = random.Random("%s:%d" % (seed, index))
        self.good = make_session(GOOD_ADDRESS)
        self.bad_ips = ["127.1.%d.%d" % (index, k + 1) for k in range(BAD_ADDRESSES_PER_CLIENT)]
        self.bad_sessions = {}

    # -- sending ------------------------------------------------------------------

    def session_for(self, address):
        if address == GOOD_ADDRESS:
            return self.good
        if address not in self.bad_sessions:
            self.bad_sessions[address] = make_session(address)
        return self.bad_sessions[address]

    def apply_auth(self, req, headers, rng):
        ctx = self.ctx
        auth = req.auth
        if auth == "admin":
            headers["Authorization"] = rng.choice(
                ["Bearer %s"] * 8 + ["bearer %s", "Bearer  %s ", "BEARER %s"]) % ctx.token
        elif auth == "browser":
            headers["Cookie"] = "botlite_session=" + ctx.browser_secret
            headers["X-CSRF-Token"] = ctx.csrf
        elif auth == "browser-nocsrf":
            headers["Cookie"] = "botlite_session=" + ctx.browser_secret
            if rng.random() < 0.6:
                headers["X-CSRF-Token"] = rng.choice(["", "x", ctx.csrf[:-1], ctx.csrf + "0",
                                                      ctx.csrf.upper(), "a" * 5000])
        elif auth == "bad":
            headers["Authorization"] = rng.choice([
                "Bearer wrong", "Bearer " + ctx.token[:-1], "Bearer " + ctx.token + "x",
                "Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer ", "Bearer " + "a" * 5000,
                b"Bearer \xff\xfe", "Token " + ctx.token, "Bearer " + ctx.token.swapcase(),
                "Bearer %s, Bearer %s" % (ctx.token, ctx.token), "Bearer \u00e9".encode(),
                "Bearer\t" + ctx.token, "Bearer " + ctx.token[::-1], ""])
        elif auth in ("badcookie", "admin+badcookie"):
            headers["Cookie"] = rng.choice([
                "botlite_session=junk", "botlite_session=" + "a" * 300, "botlite_session=",
                "botlite_session=" + ctx.browser_secret[:-1],
                "botlite_session=x; botlite_session=" + ctx.browser_secret, "=;;=",
                b"botlite_session=\xff\xfe", "botlite_session=\"quoted\"",
                "botlite_session=%00", "a=b; " * 200, "botlite_login=x"])
            if auth == "admin+badcookie":
                headers["Authorization"] = "Bearer " + ctx.token

    def send(self, req):
        """Send one request (if the budget allows); the response or None."""
        ctx = self.ctx
        if not ctx.stats.take() or ctx.stop.is_set():
            ctx.stop.set()
            raise BudgetSpent
        rng = self.rng
        headers = dict(req.headers)
        self.apply_auth(req, headers, rng)
        address = rng.choice(self.bad_ips) if (req.auth in BAD_AUTHS or req.bad_address) \
            else GOOD_ADDRESS
        mark = ctx.server_log.mark()
        try:
            resp = None
            if not (req.raw or req.raw_bytes is not None or isinstance(req.path, bytes)
                    or isinstance(req.query, bytes)):
                resp = self._send_requests(req, headers, address)
            if resp is None:
                resp = self._send_raw(req, headers, address)
        except Exception as exc:  # noqa: BLE001 - every way a request can fail counts
            ctx.stats.connection_error(req, exc)
            return None
        ctx.stats.response(req, resp, mark)
        return resp

    def _send_requests(self, req, headers, address):
        """Through requests (keep-alive); None when requests refuses to send what
        the request holds (then it goes raw)."""
        url = "http://%s:%d%s" % (self.ctx.host, self.ctx.port, req.path)
        if req.query:
            url += "?" + urlencode(req.query)
        session = self.session_for(address)
        for value in headers.values():
            if isinstance(value, str):
                try:
                    value.encode("latin-1")
                except UnicodeEncodeError:
                    return None  # http.client would refuse it: raw bytes instead
        try:
            prepared = session.prepare_request(requests.Request(
                req.method, url, headers=headers, data=req.body))
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
                UnicodeError, ValueError):
            return None
        if req.body is None and req.method in ("POST", "PATCH", "PUT") and \
                "Content-Length" not in prepared.headers:
            prepared.headers["Content-Length"] = "0"
        try:
            response = session.send(prepared, timeout=(5, self.ctx.timeout),
                                    allow_redirects=False)
        except requests.exceptions.InvalidHeader:
            return None
        return Resp(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                    response.content, response.cookies.get_dict())

    def _send_raw(self, req, headers, address):
        ctx = self.ctx
        if req.raw_bytes is not None:
            data = req.raw_bytes.replace(b"{HOST}", ("%s:%d" % (ctx.host, ctx.port)).encode())
            return raw_exchange(ctx.host, ctx.port, address, data,
                                min(3.0, ctx.timeout) if req.may_go_unanswered else ctx.timeout)
        path = req.path if isinstance(req.path, bytes) else req.path.encode("latin-1")
        if req.query:
            path += b"?" + (req.query if isinstance(req.query, bytes)
                            else urlencode(req.query).encode())
        method = req.method.encode("latin-1")
        lines = [method + b" " + path + b" HTTP/1.1"]
        names = {k.lower() for k in headers}
        if "host" not in names:
            lines.append(("Host: %s:%d" % (ctx.host, ctx.port)).encode())
        for name, value in headers.items():
            if isinstance(value, str):
                value = value.encode("utf-8", "surrogatepass")
            lines.append(name.encode("latin-1") + b": " + value)
        body = req.body or b""
        if "content-length" not in names and "transfer-encoding" not in names and (
                body or req.method in ("POST", "PATCH", "PUT")):
            lines.append(b"Content-Length: %d" % len(body))
        lines.append(b"Connection: close")
        data = b"\r\n".join(lines) + b"\r\n\r\n" + body
        return raw_exchange(ctx.host, ctx.port, address, data, ctx.timeout)

    # -- building -----------------------------------------------------------------

    def segment(self, kind, rng, valid_p=0.6):
        """(path segment, note): a known id of ``kind`` or a bad one; bytes when it
        must go out unencoded."""
        if kind is not None and rng.random() < valid_p:
            value = self.ctx.state.pick(kind, rng)
            if value is not None:
                return quote(str(value), safe=""), "valid " + kind
        r = rng.random()
        if r < 0.12:
            return rng.choice(RAW_SEGMENTS), "raw id"
        if r < 0.25:
            other = self.ctx.state.pick(rng.choice(["bot", "faq", "intent", "source", "task",
                                                    "notification", "job", "conversation",
                                                    "message"]), rng)
            if other is not None:
                if isinstance(other, tuple):
                    other = other[0]
                return quote(str(other), safe=""), "id of another kind"
        junk = rng.choice(JUNK_IDS)
        return quote(junk.encode("utf-8", "surrogatepass"), safe=""), "junk id %r" % junk[:24]

    def fill(self, template, kinds, rng, valid_p=0.6):
        """The path of ``template`` with each <placeholder> from ``kinds``."""
        notes = []
        pieces = re.split(r"(<[^>]+>)", template)
        out = []
        for piece in pieces:
            if piece.startswith("<"):
                name = piece[1:-1].split(":")[0]
                value, note = self.segment(kinds.get(name), rng, valid_p)
                notes.append("%s: %s" % (name, note))
                out.append(value)
            else:
                out.append(piece)
        if any(isinstance(p, bytes) for p in out):
            return b"".join(p if isinstance(p, bytes) else p.encode() for p in out), notes
        return "".join(out), notes

    def query(self, rng, spec):
        """Query pairs from ``spec`` {name: valid values}, some mutated; sometimes
        raw bytes."""
        if spec is None and rng.random() < 0.9:
            return None
        if rng.random() < 0.06:
            return rng.choice(RAW_QUERIES)
        pairs = []
        for name, values in (spec or {}).items():
            if rng.random() < 0.65:
                if rng.random() < 0.6:
                    pairs.append((name, rng.choice(values)))
                else:
                    pairs.append((name, rng.choice(LIMITS + BOOLS + STATUSES + PERIODS +
                                                   [junk_string(rng)])))
        if rng.random() < 0.1:
            pairs.append((rng.choice(["x", "limit", "__proto__", "日本", "a" * 200, ""]),
                          junk_string(rng)))
        if pairs and rng.random() < 0.04:
            pairs.append(pairs[0])
        return [(k, v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v)
                for k, v in pairs] or None

    def extra_headers(self, rng, headers, kind):
        if rng.random() > 0.15:
            return
        r = rng.random()
        if r < 0.3:
            origin = rng.choice(ORIGINS)
            if origin == "http://127.0.0.1:1":
                origin = "http://%s:%d" % (self.ctx.host, self.ctx.port)
            headers["Origin"] = origin
        elif r < 0.4:
            headers.update(rng.choice([
                {"X-Forwarded-Host": "evil.example"}, {"X-Forwarded-Proto": "https"},
                {"X-Forwarded-For": rng.choice(["1.2.3.4", "junk", "1.2.3.4, 5.6.7.8", ""])},
                {"Forwarded": "for=1.2.3.4;host=evil.example;proto=https"}]))
        elif r < 0.5:
            headers["Accept"] = rng.choice(["*/*", "text/html", "application/json;q=abc",
                                            "", "a" * 2000])
        elif r < 0.58:
            headers["User-Agent"] = "x" * 8000
        elif r < 0.64:
            headers["Accept-Encoding"] = rng.choice(["gzip, deflate, br, zstd",
                                                     "identity;q=0", "*;q=0"])
        elif r < 0.7:
            headers["Content-Encoding"] = rng.choice(["gzip", "deflate", "junk"])
        elif r < 0.8:
            headers["Range"] = rng.choice(["bytes=0-0", "bytes=-1", "bytes=99999999-",
                                           "bytes=5-2", "bytes=a-b", "bytes=0-1,2-3,4-5",
                                           "bytes=" + "0-1," * 500, "items=0-1", "bytes=-0",
                                           "bytes=" + "9" * 30 + "-"])
        elif r < 0.88:
            headers["If-Modified-Since"] = rng.choice([
                "garbage", "Mon, 32 Foo 2026 99:99:99 GMT", "0", "Thu, 01 Jan 1970 00:00:00 GMT",
                "Fri, 31 Dec 9999 23:59:59 GMT", "Sat, 01 Jan 0001 00:00:00 GMT", ""])
        elif r < 0.92:
            headers["If-None-Match"] = rng.choice(['"x"', "*", "W/\"1\"", ""])
        elif r < 0.96:
            for i in range(200):
                headers["X-Fuzz-%d" % i] = "v" * 20
        else:
            headers["X-Unicode"] = rng.choice(["é".encode(), b"\xff\xfe", "日本".encode()])

    def api(self, rng, method, template, kinds=None, body=None, query=None, kind="admin",
            valid_p=0.6, on_ok=None, path=None):
        """One request to a JSON route: ids from ``kinds`` {placeholder: pool},
        ``body`` a function making a valid body, ``query`` {name: valid values}."""
        if path is None:
            path, notes = self.fill(template, kinds or {}, rng, valid_p)
        else:
            notes = ["given path"]
        headers = {}
        data = None
        if body is not None:
            data, note = json_variant(rng, body(rng))
            notes.append(note)
            ctype = content_type(rng)
            if ctype is not None:
                headers["Content-Type"] = ctype
        elif method in ("POST", "PATCH") and rng.random() < 0.2:
            data, note = rng.choice([(b"{}", "empty object"), (b"junk", "junk body"),
                                     (b"x" * 5000, "5 KB body")])
            notes.append(note)
        self.extra_headers(rng, headers, kind)
        pairs = self.query(rng, query)
        if pairs:
            notes.append("raw query" if isinstance(pairs, bytes) else
                         "query %s" % ",".join(sorted({k for k, _ in pairs}))[:60])
        req = Req(method, template, path, pairs, headers, data,
                  pick_weighted(rng, AUTH_MIX[kind]), "; ".join(notes))
        if rng.random() < 0.05 and isinstance(req.path, str):
            req.path = req.path.encode() + rng.choice([b"/..", b"%ZZ", b"/%00", b"/.", b"//",
                                                       b"/../" + template.split("/")[1].encode(),
                                                       b"\xff", b";x=1", b"%2F"])
            req.note += "; raw path suffix"
        resp = self.send(req)
        if resp is not None and 200 <= resp.status < 300 and on_ok is not None:
            payload = resp.json()
            if payload is not None:
                on_ok(payload)
        return resp

    def page(self, rng, template, kinds, query=None):
        return self.api(rng, "GET", template, kinds, query=query, kind="page", valid_p=0.75)

    # -- the loop -----------------------------------------------------------------

    def run(self, routes):
        rng = self.rng
        ctx = self.ctx
        known = [key for key in sorted(routes) if key in GENERATORS]
        try:
            while not ctx.stop.is_set():
                if time.monotonic() > ctx.deadline:
                    log("--max-seconds reached")
                    ctx.stop.set()
                    break
                r = rng.random()
                try:
                    if r < 0.85:
                        key = rng.choice(known)
                        GENERATORS[key](self, rng)
                    elif r < 0.90:
                        wrong_method(self, rng, routes)
                    elif r < 0.93:
                        unknown_path(self, rng)
                    else:
                        http_junk(self, rng, known)
                except BudgetSpent:
                    raise
                except Exception as exc:  # a bug in a generator: say so, go on
                    log("generator error: %r", exc)
        except BudgetSpent:
            pass


class BudgetSpent(Exception):
    pass


# -- generators, one per route ---------------------------------------------------------

def bot_body(rng, create=True):
    body = {}
    if create:
        body["name"] = "%s %04x" % (rng.choice(NAMES), rng.getrandbits(16))
        if rng.random() < 0.5:
            body["id"] = "fz-%08x" % rng.getrandbits(32)
    elif rng.random() < 0.5:
        body["name"] = "%s %04x" % (rng.choice(NAMES), rng.getrandbits(16))
    for field in ("description", "greeting", "fallback_message"):
        if rng.random() < 0.4:
            body[field] = rng.choice(["", "Hi! I am {bot_name}.", "Sorry, no idea.",
                                      "d" * 2000, "d" * 2001])
    if rng.random() < 0.4:
        body["allowed_domains"] = rng.sample(DOMAINS, rng.randint(0, 4))
    if rng.random() < 0.5:
        body["rate_limit_per_minute"] = rng.choice([0, 10000, 5000, 1, 10001, -1])
    if rng.random() < 0.25:
        body["webhook_url"] = rng.choice(WEBHOOKS)
        if rng.random() < 0.7:
            body["webhook_secret"] = rng.choice(["s" * 16, "short", None, "s" * 5000])
    return body


def on_bot(state):
    def collect(payload):
        bot_id = payload.get("id")
        if isinstance(bot_id, str):
            state.add("bot", bot_id)
            state.add("bot_patchable", bot_id)
    return collect


@route("GET", "/healthz")
def g_healthz(fz, rng):
    fz.api(rng, "GET", "/healthz", kind="public", query={"x": ["1"]})


@route("GET", "/api/chatbots")
def g_list_bots(fz, rng):
    fz.api(rng, "GET", "/api/chatbots", query={"limit": LIMITS})


@route("POST", "/api/chatbots")
def g_create_bot(fz, rng):
    fz.api(rng, "POST", "/api/chatbots", body=bot_body, on_ok=on_bot(fz.ctx.state))


@route("GET", "/api/chatbots/<bot_id>")
def g_get_bot(fz, rng):
    fz.api(rng, "GET", "/api/chatbots/<bot_id>", {"bot_id": "bot"})


@route("PATCH", "/api/chatbots/<bot_id>")
def g_patch_bot(fz, rng):
    fz.api(rng, "PATCH", "/api/chatbots/<bot_id>", {"bot_id": "bot_patchable"},
           body=lambda r: bot_body(r, create=False))


def sacrificial(fz, rng, kind, create):
    """An unprotected id of ``kind`` to delete, made first when there is none."""
    value = fz.ctx.state.take(kind, rng)
    if value is None:
        create(fz, rng)
        value = fz.ctx.state.take(kind, rng)
    return value


def create_bot_valid(fz, rng):
    resp = fz.send(Req("POST", "/api/chatbots", "/api/chatbots",
                       headers={"Content-Type": "application/json"},
                       body=dumps({"name": "Doomed %04x" % rng.getrandbits(16)}),
                       auth="admin", note="valid bot to delete"))
    if resp is not None and resp.status == 201:
        on_bot(fz.ctx.state)(resp.json() or {})


@route("DELETE", "/api/chatbots/<bot_id>")
def g_delete_bot(fz, rng):
    if rng.random() < 0.5:
        bot_id = sacrificial(fz, rng, "bot", create_bot_valid)
        if bot_id is not None:
            fz.ctx.state.discard("bot_patchable", bot_id)
            fz.api(rng, "DELETE", "/api/chatbots/<bot_id>",
                   path="/api/chatbots/" + quote(bot_id, safe=""))
            return
    fz.api(rng, "DELETE", "/api/chatbots/<bot_id>", {"bot_id": None}, valid_p=0)


TASK_QUERY = {"status": STATUSES, "name": ["health_check", "send_notification", "junk", ""],
              "limit": LIMITS}


def on_task(state):
    def collect(payload):
        if isinstance(payload.get("task_id"), str):
            state.add("task", payload["task_id"])
        for task in payload.get("tasks", [])[:20] if isinstance(payload.get("tasks"), list) else []:
            if isinstance(task, dict) and isinstance(task.get("task_id"), str):
                state.add("task", task["task_id"])
    return collect


@route("GET", "/api/tasks")
def g_list_tasks(fz, rng):
    fz.api(rng, "GET", "/api/tasks", query=TASK_QUERY, on_ok=on_task(fz.ctx.state))


def task_body(rng):
    name, args = rng.choice(TASK_CALLS)
    body = {"name": name, "args": list(args)}
    if rng.random() < 0.3:
        body["kwargs"] = rng.choice([{}, {"notification_type": "info"}, {"bogus": 1}])
    if rng.random() < 0.4:
        body["delay"] = rng.choice([0, 5, 3600, 30 * 86400, 30 * 86400 + 1, -1, 1.5, 1e308])
    return body


@route("POST", "/api/tasks")
def g_submit_task(fz, rng):
    fz.api(rng, "POST", "/api/tasks", body=task_body, on_ok=on_task(fz.ctx.state))


@route("GET", "/api/tasks/<task_id>")
def g_show_task(fz, rng):
    fz.api(rng, "GET", "/api/tasks/<task_id>", {"task_id": "task"})


@route("POST", "/api/tasks/<task_id>/revoke")
def g_revoke_task(fz, rng):
    fz.api(rng, "POST", "/api/tasks/<task_id>/revoke", {"task_id": "task"})


@route("POST", "/api/tasks/<task_id>/retry")
def g_retry_task(fz, rng):
    fz.api(rng, "POST", "/api/tasks/<task_id>/retry", {"task_id": "task"})


@route("GET", "/api/queues")
def g_queues(fz, rng):
    fz.api(rng, "GET", "/api/queues")


@route("POST", "/api/queues/<queue>/purge")
def g_purge(fz, rng):
    fz.api(rng, "POST", "/api/queues/<queue>/purge", {"queue": "queue"}, valid_p=0.4)


def job_body(rng):
    name, args = rng.choice(TASK_CALLS)
    body = {"name": "fz-job-%06x" % rng.getrandbits(24), "task": name,
            "crontab": rng.choice(CRONTABS)}
    if rng.random() < 0.5:
        body["args"] = list(args)
    for field, values in (("enabled", [True, False]), ("no_overlap", [True, False]),
                          ("description", ["fuzz job", "", "d" * 3000])):
        if rng.random() < 0.3:
            body[field] = rng.choice(values)
    return body


def on_job(state):
    def collect(payload):
        if isinstance(payload.get("name"), str):
            state.add("job", payload["name"])
    return collect


@route("GET", "/api/schedule")
def g_list_schedule(fz, rng):
    fz.api(rng, "GET", "/api/schedule")


@route("POST", "/api/schedule")
def g_create_job(fz, rng):
    fz.api(rng, "POST", "/api/schedule", body=job_body, on_ok=on_job(fz.ctx.state))


@route("GET", "/api/schedule/preview")
def g_preview(fz, rng):
    fz.api(rng, "GET", "/api/schedule/preview",
           query={"crontab": CRONTABS, "count": ["5", "1", "50", "51", "0", "-1", "x", "1e9"]})


@route("GET", "/api/schedule/<name>")
def g_get_job(fz, rng):
    fz.api(rng, "GET", "/api/schedule/<name>", {"name": "job"}, query={"limit": LIMITS})


def job_patch_body(rng):
    body = job_body(rng)
    del body["name"]
    del body["task"]
    return body


@route("PATCH", "/api/schedule/<name>")
def g_patch_job(fz, rng):
    fz.api(rng, "PATCH", "/api/schedule/<name>", {"name": "job"}, body=job_patch_body)


def create_job_valid(fz, rng):
    body = {"name": "fz-doomed-%06x" % rng.getrandbits(24), "task": "health_check",
            "crontab": "0 3 * * *"}
    resp = fz.send(Req("POST", "/api/schedule", "/api/schedule", body=dumps(body),
                       headers={"Content-Type": "application/json"}, auth="admin",
                       note="valid job to delete"))
    if resp is not None and resp.status == 201:
        fz.ctx.state.add("job", body["name"])


@route("DELETE", "/api/schedule/<name>")
def g_delete_job(fz, rng):
    if rng.random() < 0.5:
        name = sacrificial(fz, rng, "job", create_job_valid)
        if name is not None:
            fz.api(rng, "DELETE", "/api/schedule/<name>",
                   path="/api/schedule/" + quote(name, safe=""))
            return
    fz.api(rng, "DELETE", "/api/schedule/<name>", {"name": "job"}, valid_p=0.3)


@route("POST", "/api/schedule/<name>/run")
def g_run_job(fz, rng):
    fz.api(rng, "POST", "/api/schedule/<name>/run", {"name": "job"})


def on_source(state):
    def collect(payload):
        source_id = payload.get("source_id")
        if isinstance(source_id, str):
            state.add("source", source_id)
        for source in payload.get("sources", [])[:20] if isinstance(
                payload.get("sources"), list) else []:
            if isinstance(source, dict) and isinstance(source.get("id"), str):
                state.add("source", source["id"])
                if isinstance(source.get("task_id"), str):
                    state.add("task", source["task_id"])
    return collect


@route("GET", "/api/chatbots/<bot_id>/sources")
def g_list_sources(fz, rng):
    fz.api(rng, "GET", "/api/chatbots/<bot_id>/sources", {"bot_id": "bot"},
           on_ok=on_source(fz.ctx.state))


def upload_request(fz, rng, path, valid=False):
    """A multipart upload to ``path``: valid, or with odd names, bodies, framing."""
    if valid:
        filename, (data, note) = b"doc%06x.md" % rng.getrandbits(24), (text_document(rng), "text")
    else:
        filename = rng.choice(FILENAMES)
        data, note = file_payload(rng, filename)
    ctype = rng.choice([None, b"text/markdown", b"application/pdf", b"application/octet-stream",
                        b"text/plain; charset=utf-8", b"junk", b"\xff"]) if not valid else None
    parts = [(b"file", filename, ctype, data)]
    notes = ["filename %r" % filename[:40], note]
    r = rng.random()
    if valid or r < 0.6:
        body, header = multipart(rng, parts)
    elif r < 0.66:
        body, header = multipart(rng, [(b"upload", filename, None, data)])
        notes.append("no file field")
    elif r < 0.71:
        body, header = multipart(rng, parts + [(b"file", b"second.txt", None, b"second")])
        notes.append("two file fields")
    elif r < 0.75:
        body, header = multipart(rng, [(b"file", None, None, data)])
        notes.append("file field without filename")
    elif r < 0.8:
        body, _ = multipart(rng, parts)
        header = "multipart/form-data"
        notes.append("no boundary")
    elif r < 0.84:
        body, _ = multipart(rng, parts)
        header = "multipart/form-data; boundary=other"
        notes.append("wrong boundary")
    elif r < 0.88:
        body, header = multipart(rng, parts)
        body = body[:max(1, len(body) // 2)]
        notes.append("truncated")
    elif r < 0.91:
        boundary = b"b" * 200
        body, header = multipart(rng, parts, boundary)
        notes.append("200-char boundary")
    elif r < 0.94:
        body = b"--x\r\n\r\n" + data + b"\r\n--x--\r\n"
        header = "multipart/form-data; boundary=x"
        notes.append("part without headers")
    elif r < 0.97:
        body, header = multipart(rng, parts, b'"quoted"')
        header = 'multipart/form-data; boundary="\\"quoted\\""'
        notes.append("quoted boundary")
    else:
        body, header = b"", "multipart/form-data; boundary=x"
        notes.append("empty multipart")
    return Req("POST", "/api/chatbots/<bot_id>/sources", path, headers={"Content-Type": header},
               body=body, auth="admin" if valid else pick_weighted(rng, AUTH_MIX["admin"]),
               note="; ".join(notes))


def website_body(rng):
    body = {"url": rng.choice(URLS)}
    for field, values in (("max_pages", [1, 20, 500, 501, 0, -1]),
                          ("max_depth", [0, 2, 10, 11, -1]),
                          ("refresh_hours", [1, 24, 8760, 8761, 0, None])):
        if rng.random() < 0.4:
            body[field] = rng.choice(values)
    return body


@route("POST", "/api/chatbots/<bot_id>/sources")
def g_add_source(fz, rng):
    if rng.random() < 0.35:
        fz.api(rng, "POST", "/api/chatbots/<bot_id>/sources", {"bot_id": "bot"},
               body=website_body, on_ok=on_source(fz.ctx.state))
        return
    path, notes = fz.fill("/api/chatbots/<bot_id>/sources", {"bot_id": "bot"}, rng, 0.8)
    req = upload_request(fz, rng, path)
    req.note = "; ".join(notes) + "; " + req.note
    resp = fz.send(req)
    if resp is not None and resp.status in (200, 202):
        on_source(fz.ctx.state)(resp.json() or {})


def upload_valid(fz, rng):
    req = upload_request(fz, rng, "/api/chatbots/fuzz-a/sources", valid=True)
    req.note = "valid upload to delete"
    resp = fz.send(req)
    if resp is not None and resp.status in (200, 202):
        on_source(fz.ctx.state)(resp.json() or {})


@route("GET", "/api/sources/<source_id>")
def g_get_source(fz, rng):
    fz.api(rng, "GET", "/api/sources/<source_id>", {"source_id": "source"})


@route("DELETE", "/api/sources/<source_id>")
def g_delete_source(fz, rng):
    if rng.random() < 0.5:
        source_id = sacrificial(fz, rng, "source", upload_valid)
        if source_id is not None:
            fz.api(rng, "DELETE", "/api/sources/<source_id>",
                   path="/api/sources/" + quote(source_id, safe=""))
            return
    fz.api(rng, "DELETE", "/api/sources/<source_id>", {"source_id": None}, valid_p=0)


@route("POST", "/api/sources/<source_id>/reprocess")
def g_reprocess(fz, rng):
    fz.api(rng, "POST", "/api/sources/<source_id>/reprocess", {"source_id": "source"})


def on_notifications(state):
    def collect(payload):
        notes = payload.get("notifications")
        if isinstance(notes, list):
            for note in notes[:20]:
                if isinstance(note, dict) and note.get("id") is not None:
                    state.add("notification", str(note["id"]))
    return collect


@route("GET", "/api/notifications")
def g_list_notifications(fz, rng):
    fz.api(rng, "GET", "/api/notifications",
           query={"user_id": ["admin", "fuzzer", "", "nobody"], "limit": LIMITS,
                  "unread": BOOLS}, on_ok=on_notifications(fz.ctx.state))


@route("POST", "/api/notifications/<notification_id>/read")
def g_read_notification(fz, rng):
    fz.api(rng, "POST", "/api/notifications/<notification_id>/read",
           {"notification_id": "notification"})


@route("POST", "/api/notifications/read-all")
def g_read_all(fz, rng):
    fz.api(rng, "POST", "/api/notifications/read-all",
           body=lambda r: {"user_id": r.choice(["admin", "fuzzer", "nobody"])})


@route("GET", "/api/chatbots/<bot_id>/analytics")
def g_analytics(fz, rng):
    fz.api(rng, "GET", "/api/chatbots/<bot_id>/analytics", {"bot_id": "bot"},
           query={"period": PERIODS, "refresh": ["0", "0", "0", "1", "true", "maybe"]})


def feedback_request(fz, rng):
    pair = fz.ctx.state.pick("message", rng)
    if pair is not None and rng.random() < 0.7:
        message_id, session_id = pair
        path = "/api/messages/%s/feedback" % quote(message_id, safe="")
        note = "valid message"
    else:
        path, notes = fz.fill("/api/messages/<message_id>/feedback", {"message_id": None},
                              rng, 0)
        session_id, note = "s-none", "; ".join(notes)
    other = fz.ctx.state.pick("message", rng)
    body = {"helpful": rng.choice([True, False]),
            "session_id": other[1] if other and rng.random() < 0.15 else session_id}
    return path, body, note


@route("POST", "/api/messages/<message_id>/feedback")
def g_feedback(fz, rng):
    path, body, _ = feedback_request(fz, rng)
    fz.api(rng, "POST", "/api/messages/<message_id>/feedback", body=lambda r: body,
           kind="public", path=path)


@route("GET", "/api/reports/system")
def g_system_report(fz, rng):
    fz.api(rng, "GET", "/api/reports/system", query={"refresh": ["0", "0", "1", "yes", "2"]})


def chat_message(fz, rng):
    r = rng.random()
    if r < 0.25:
        phrase = fz.ctx.state.pick("phrase", rng)
        if phrase is not None:
            return phrase
    if r < 0.7:
        return rng.choice(QUESTIONS)
    if r < 0.8:
        return rng.choice(["x" * 4000, "x" * 4001, "é" * 4000, "😀" * 2001, "", " ", "\n\t"])
    return junk_string(rng)


def chat_body(fz, rng, bot_id):
    body = {"message": chat_message(fz, rng)}
    r = rng.random()
    if r < 0.4:
        pair = fz.ctx.state.pick("message", rng)
        if pair is not None:
            body["session_id"] = pair[1]
    elif r < 0.6:
        body["session_id"] = rng.choice([None, "", "s-%08x" % rng.getrandbits(32), "a" * 64,
                                         "a" * 65, "bad id!", "../x", "日本", "a.b_c:d-e"])
    if bot_id is not None:
        body["chatbot_id"] = bot_id
    return body


def on_chat(state, body):
    def collect(payload):
        if isinstance(payload.get("message_id"), str) and isinstance(payload.get("session_id"),
                                                                      str):
            state.add("message", (payload["message_id"], payload["session_id"]))
    return collect


def chat_origin(rng, headers):
    if rng.random() < 0.3:
        headers["Origin"] = rng.choice(ORIGINS)


@route("POST", "/chatbot/message/")
def g_chat(fz, rng):
    bot_id = rng.choice(["fuzz-a", "fuzz-a", "fuzz-b", "default", None,
                         fz.ctx.state.pick("bot", rng), "nope", ""])
    body = chat_body(fz, rng, bot_id)
    fz.api(rng, "POST", "/chatbot/message/", body=lambda r: body, kind="public",
           on_ok=on_chat(fz.ctx.state, body))


@route("POST", "/api/chatbots/<bot_id>/chat")
def g_chat_bot(fz, rng):
    body = chat_body(fz, rng, None)
    fz.api(rng, "POST", "/api/chatbots/<bot_id>/chat", {"bot_id": "bot"}, valid_p=0.75,
           body=lambda r: body, kind="public", on_ok=on_chat(fz.ctx.state, body))


def preflight(fz, rng, template, path):
    headers = {}
    r = rng.random()
    if r < 0.85:
        headers["Origin"] = rng.choice(ORIGINS)
    if rng.random() < 0.7:
        headers["Access-Control-Request-Method"] = rng.choice(["POST", "GET", "DELETE", "", "x"])
    if rng.random() < 0.5:
        headers["Access-Control-Request-Headers"] = rng.choice(
            ["content-type", "authorization", "x-csrf-token", "a" * 3000, ""])
    fz.send(Req("OPTIONS", template, path, headers=headers,
                auth=pick_weighted(rng, AUTH_MIX["public"]), note="preflight"))


@route("OPTIONS", "/chatbot/message/")
def g_preflight(fz, rng):
    preflight(fz, rng, "/chatbot/message/", "/chatbot/message/")


@route("OPTIONS", "/api/chatbots/<bot_id>/chat")
def g_preflight_bot(fz, rng):
    path, _ = fz.fill("/api/chatbots/<bot_id>/chat", {"bot_id": "bot"}, rng, 0.75)
    preflight(fz, rng, "/api/chatbots/<bot_id>/chat", path)


@route("GET", "/api/chatbots/<bot_id>/widget")
def g_widget_info(fz, rng):
    fz.api(rng, "GET", "/api/chatbots/<bot_id>/widget", {"bot_id": "bot"}, kind="public",
           valid_p=0.75)


def on_conversations(state):
    def collect(payload):
        items = payload.get("conversations")
        if isinstance(items, list):
            for item in items[:20]:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    state.add("conversation", item["id"])
    return collect


@route("GET", "/api/chatbots/<bot_id>/conversations")
def g_conversations(fz, rng):
    fz.api(rng, "GET", "/api/chatbots/<bot_id>/conversations", {"bot_id": "bot"},
           query={"limit": LIMITS}, on_ok=on_conversations(fz.ctx.state))


@route("GET", "/api/conversations/<conversation_id>")
def g_conversation(fz, rng):
    fz.api(rng, "GET", "/api/conversations/<conversation_id>",
           {"conversation_id": "conversation"})


def faq_body(rng):
    return {"question": rng.choice(QUESTIONS + ["q" * 3000, "What about %04x?" %
                                                rng.getrandbits(16)]),
            "answer": rng.choice(["An answer.", "a" * 5000, "{bot_name}", "<b>bold</b>"])}


def on_id(state, kind):
    def collect(payload):
        if payload.get("id") is not None:
            state.add(kind, str(payload["id"]))
    return collect


@route("GET", "/api/chatbots/<bot_id>/faqs")
def g_list_faqs(fz, rng):
    fz.api(rng, "GET", "/api/chatbots/<bot_id>/faqs", {"bot_id": "bot"})


@route("POST", "/api/chatbots/<bot_id>/faqs")
def g_add_faq(fz, rng):
    fz.api(rng, "POST", "/api/chatbots/<bot_id>/faqs", {"bot_id": "bot"}, body=faq_body,
           on_ok=on_id(fz.ctx.state, "faq"))


@route("PATCH", "/api/faqs/<faq_id>")
def g_patch_faq(fz, rng):
    fz.api(rng, "PATCH", "/api/faqs/<faq_id>", {"faq_id": "faq"},
           body=lambda r: dict(list(faq_body(r).items())[:r.randint(1, 2)]))


def create_faq_valid(fz, rng):
    resp = fz.send(Req("POST", "/api/chatbots/<bot_id>/faqs", "/api/chatbots/fuzz-a/faqs",
                       headers={"Content-Type": "application/json"},
                       body=dumps({"question": "Doomed %04x?" % rng.getrandbits(16),
                                   "answer": "Soon gone."}),
                       auth="admin", note="valid FAQ to delete"))
    if resp is not None and resp.status == 201:
        on_id(fz.ctx.state, "faq")(resp.json() or {})


@route("DELETE", "/api/faqs/<faq_id>")
def g_delete_faq(fz, rng):
    if rng.random() < 0.5:
        faq_id = sacrificial(fz, rng, "faq", create_faq_valid)
        if faq_id is not None:
            fz.api(rng, "DELETE", "/api/faqs/<faq_id>", path="/api/faqs/" + quote(faq_id))
            return
    fz.api(rng, "DELETE", "/api/faqs/<faq_id>", {"faq_id": None}, valid_p=0)


def intent_body(rng):
    examples = rng.sample(["where is my parcel %04x" % rng.getrandbits(16), "cancel my order",
                           "talk to a human", "pricing please", "is it raining"],
                          rng.randint(1, 3))
    responses = rng.sample(["Sure, {bot_name} here.", "{0}", "{bot_name.__class__}",
                            "{missing}", "{", "}", "{bot_name!r:>20}", "Plain reply.",
                            "{{escaped}}", "%s", "{bot_name[0]}"], rng.randint(1, 3))
    return {"name": "fz_%06x" % rng.getrandbits(24), "examples": examples,
            "responses": responses}


def on_intent(state, body):
    def collect(payload):
        if payload.get("id") is not None:
            state.add("intent", str(payload["id"]))
            for example in body.get("examples") or []:
                if isinstance(example, str):
                    state.add("phrase", example)
    return collect


@route("GET", "/api/chatbots/<bot_id>/intents")
def g_list_intents(fz, rng):
    fz.api(rng, "GET", "/api/chatbots/<bot_id>/intents", {"bot_id": "bot"})


@route("POST", "/api/chatbots/<bot_id>/intents")
def g_add_intent(fz, rng):
    body = intent_body(rng)
    fz.api(rng, "POST", "/api/chatbots/<bot_id>/intents", {"bot_id": "bot"},
           body=lambda r: body, on_ok=on_intent(fz.ctx.state, body))


def create_intent_valid(fz, rng):
    body = {"name": "doomed_%06x" % rng.getrandbits(24), "examples": ["doomed phrase"],
            "responses": ["gone"]}
    resp = fz.send(Req("POST", "/api/chatbots/<bot_id>/intents", "/api/chatbots/fuzz-b/intents",
                       headers={"Content-Type": "application/json"}, body=dumps(body),
                       auth="admin", note="valid intent to delete"))
    if resp is not None and resp.status == 201:
        on_id(fz.ctx.state, "intent")(resp.json() or {})


@route("DELETE", "/api/intents/<intent_id>")
def g_delete_intent(fz, rng):
    if rng.random() < 0.5:
        intent_id = sacrificial(fz, rng, "intent", create_intent_valid)
        if intent_id is not None:
            fz.api(rng, "DELETE", "/api/intents/<intent_id>",
                   path="/api/intents/" + quote(intent_id))
            return
    fz.api(rng, "DELETE", "/api/intents/<intent_id>", {"intent_id": None}, valid_p=0)


# -- pages, login, logout, static --------------------------------------------------------

def throwaway_login(fz, rng):
    """A fresh browser session (never the shared one): (secret, csrf) or None."""
    resp = fz.send(Req("GET", "/login", "/login", note="throwaway login form"))
    if resp is None or resp.status != 200:
        return None
    form = re.search(r'name="csrf_token" value="([^"]+)"', resp.text())
    cookie = resp.cookies.get("botlite_login")
    if not form or not cookie:
        return None
    resp = fz.send(Req("POST", "/login", "/login",
                       headers={"Content-Type": "application/x-www-form-urlencoded",
                                "Cookie": "botlite_login=" + cookie},
                       body=urlencode({"csrf_token": form.group(1), "token": fz.ctx.token,
                                       "next": "/"}).encode(), note="throwaway login"))
    if resp is None or "botlite_session" not in resp.cookies:
        return None
    secret = resp.cookies["botlite_session"]
    resp = fz.send(Req("GET", "/", "/", headers={"Cookie": "botlite_session=" + secret},
                       note="throwaway session's home page"))
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', resp.text()) if resp else None
    return (secret, meta.group(1)) if meta else (secret, None)


@route("GET", "/")
def g_home(fz, rng):
    ctx = fz.ctx
    r = rng.random()
    if r < 0.4:
        fz.page(rng, "/", {})
        return
    if r < 0.55:
        fz.send(Req("GET", "/", "/", query=[("token", ctx.token)], note="/?token= good"))
        return
    token = rng.choice(["wrong", ctx.token[:-1], ctx.token + "x", "", " " + ctx.token,
                        "a" * 5000, "日本", "\u0000", ctx.token.upper()])
    query = [("token", token.encode("utf-8"))]
    if rng.random() < 0.1:
        query.append(("token", ctx.token))
    fz.send(Req("GET", "/", "/", query=query, note="/?token= bad", bad_address=True))


@route("GET", "/login")
def g_login_form(fz, rng):
    headers = {}
    auth = "none"
    if rng.random() < 0.3:
        auth = "browser"  # logged in already: a redirect to next
    query = [("next", rng.choice(NEXT_TARGETS).encode())] if rng.random() < 0.7 else None
    if rng.random() < 0.05:
        query = rng.choice(RAW_QUERIES)
    fz.extra_headers(rng, headers, "page")
    fz.send(Req("GET", "/login", "/login", query=query, headers=headers, auth=auth,
                note="login form"))


@route("POST", "/login")
def g_login(fz, rng):
    ctx = fz.ctx
    r = rng.random()
    if r < 0.2:
        throwaway_login(fz, rng)
        return
    fields = {"csrf_token": rng.choice(["x", "", "a" * 5000]), "token": ctx.token,
              "next": rng.choice(NEXT_TARGETS)}
    cookie = None
    if r < 0.45:  # a real form token, a wrong admin token or next
        resp = fz.send(Req("GET", "/login", "/login", note="login form"))
        if resp is not None:
            form = re.search(r'name="csrf_token" value="([^"]+)"', resp.text())
            cookie = resp.cookies.get("botlite_login")
            if form:
                fields["csrf_token"] = form.group(1)
        fields["token"] = rng.choice(["wrong", "", ctx.token + "x", "é" * 10, "a" * 100000])
    for key in list(fields):
        if rng.random() < 0.15:
            del fields[key]
        elif rng.random() < 0.1:
            fields[key] = junk_string(rng)
    headers = {"Cookie": "botlite_login=" + (cookie or rng.choice(["x", "", "a" * 300]))}
    s = rng.random()
    if s < 0.7:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in fields.items()}
                         ).encode()
        if rng.random() < 0.1:
            body += rng.choice([b"&token=%ff%fe", b"&%ZZ=1", b"&&&", b"&token", b"&next=\xff"])
    elif s < 0.85:
        body, headers["Content-Type"] = multipart(rng, [
            (k.encode(), None, None, v.encode("utf-8", "surrogatepass"))
            for k, v in fields.items()])
    else:
        body = dumps(fields)
        headers["Content-Type"] = rng.choice(["application/json", "text/plain", "junk"])
    fz.send(Req("POST", "/login", "/login", headers=headers, body=body, bad_address=True,
                note="login with %s" % ", ".join(sorted(fields))))


@route("POST", "/logout")
def g_logout(fz, rng):
    ctx = fz.ctx
    r = rng.random()
    if r < 0.35:
        session = throwaway_login(fz, rng)
        if session is None:
            return
        secret, csrf = session
        field = csrf if rng.random() < 0.8 else "wrong"
        fz.send(Req("POST", "/logout", "/logout",
                    headers={"Cookie": "botlite_session=" + secret,
                             "Content-Type": "application/x-www-form-urlencoded"},
                    body=urlencode({"csrf_token": field or ""}).encode(), note="logout"))
        return
    headers = {"Content-Type": rng.choice(["application/x-www-form-urlencoded",
                                           "multipart/form-data", "application/json"])}
    # The shared session only ever with a wrong csrf_token (a 403, it stays logged in).
    body = urlencode({"csrf_token": rng.choice(["", "x", ctx.csrf[:-1], "a" * 5000])}).encode() \
        if rng.random() < 0.8 else rng.choice([b"", b"\xff\xfe", b"csrf_token=%ZZ"])
    if r < 0.6:
        headers["Cookie"] = "botlite_session=" + ctx.browser_secret
        fz.send(Req("POST", "/logout", "/logout", headers=headers, body=body,
                    note="logout of the shared session with a wrong csrf_token"))
    else:
        fz.send(Req("POST", "/logout", "/logout", headers=headers, body=body,
                    auth=rng.choice(["none", "badcookie"]), note="logout without a session"))


@route("GET", "/static/<filename:path>")
def g_static(fz, rng):
    headers = {}
    fz.extra_headers(rng, headers, "public")
    if rng.random() < 0.2:
        headers["Range"] = rng.choice(["bytes=0-10", "bytes=-5", "bytes=99999-", "bytes=5-1",
                                       "bytes=a-b", "bytes=0-1,3-4"])
    r = rng.random()
    if r < 0.5:
        path = "/static/" + rng.choice(STATIC_FILES)
    elif r < 0.75:
        path = "/static/" + quote(rng.choice(STATIC_JUNK).encode("utf-8"), safe="")
    else:
        path = b"/static/" + rng.choice(STATIC_JUNK).encode("utf-8")
    fz.send(Req("GET", "/static/<filename:path>", path, headers=headers,
                auth=pick_weighted(rng, AUTH_MIX["public"]), note="static"))


@route("GET", "/widget.js")
def g_widget_js(fz, rng):
    headers = {}
    fz.extra_headers(rng, headers, "public")
    fz.send(Req("GET", "/widget.js", "/widget.js", query=fz.query(rng, {"v": ["1", "x"]}),
                headers=headers, auth=pick_weighted(rng, AUTH_MIX["public"]), note="widget.js"))


def page_route(template, kinds, query=None):
    def generate(fz, rng):
        fz.page(rng, template, kinds, query)
    route("GET", template)(generate)


page_route("/bots/<bot_id>", {"bot_id": "bot"})
page_route("/bots/<bot_id>/fragments/sources", {"bot_id": "bot"})
page_route("/bots/<bot_id>/sources/<source_id>", {"bot_id": "bot", "source_id": "source"})
page_route("/bots/<bot_id>/playground", {"bot_id": "bot"})
page_route("/bots/<bot_id>/faqs", {"bot_id": "bot"})
page_route("/bots/<bot_id>/conversations", {"bot_id": "bot"}, {"limit": LIMITS})
page_route("/bots/<bot_id>/conversations/<conversation_id>",
           {"bot_id": "bot", "conversation_id": "conversation"})
page_route("/bots/<bot_id>/analytics", {"bot_id": "bot"},
           {"period": PERIODS, "refresh": ["0", "0", "1", "maybe"]})
page_route("/bots/<bot_id>/settings", {"bot_id": "bot"})
page_route("/tasks", {}, TASK_QUERY)
page_route("/tasks/fragments/live", {})
page_route("/tasks/<task_id>", {"task_id": "task"})
page_route("/schedule", {})
page_route("/notifications", {}, {"unread": BOOLS, "limit": LIMITS})
page_route("/system", {})


# -- outside the routes ------------------------------------------------------------------

WRONG_METHODS = ["PUT", "PATCH", "DELETE", "POST", "GET", "HEAD", "TRACE", "FOO", "OPTIONS",
                 "PROPFIND", "get"]


def wrong_method(fz, rng, routes):
    methods = collections.defaultdict(set)
    for method, template in routes:
        methods[template].add(method)
    template = rng.choice(sorted(methods))
    allowed = methods[template] | ({"HEAD"} if "GET" in methods[template] else set())
    method = rng.choice([m for m in WRONG_METHODS if m not in allowed])
    kinds = {"bot_id": "bot", "task_id": "task", "source_id": "source", "faq_id": "faq",
             "intent_id": "intent", "name": "job", "queue": "queue",
             "notification_id": "notification", "conversation_id": "conversation",
             "message_id": None, "filename": None}
    path, notes = fz.fill(template, kinds, rng, 0.8)
    if template.startswith("/static/"):
        path = "/static/app.css"
    body = b'{"name": "x"}' if rng.random() < 0.5 else None
    raw = method == "get"
    fz.send(Req(method, template, path, body=body, auth=rng.choice(["admin", "none", "browser"]),
                headers={"Content-Type": "application/json"} if body else {}, raw=raw,
                cover=False, note="method not allowed; " + "; ".join(notes)))


UNKNOWN_PATHS = ["/api/nope", "/api/chatbots/fuzz-a/nope", "/api/chatbots/fuzz-a/faqs/1",
                 "/bots/", "/api/", "//", "/favicon.ico", "/.env", "/admin", "/api",
                 "/api/chatbots/", "/chatbot/message", "/chatbot/message//", "/bots/fuzz-a/",
                 "/tasks/", "/static", "/widget.js/", "/healthz/", "/HEALTHZ", "/api/v1/chatbots",
                 "/%2e%2e/%2e%2e/etc/passwd", "/api/chatbots/%2F", "/bots/fuzz-a/sources",
                 "/" + "a" * 5000, "/api/schedule/preview/x", "/login/", "/logout"]


def unknown_path(fz, rng):
    path = rng.choice(UNKNOWN_PATHS)
    method = "GET" if path != "/logout" else "GET"
    if rng.random() < 0.2:
        method = rng.choice(["POST", "DELETE", "PATCH"])
    fz.send(Req(method, "(unknown path)", path, auth=rng.choice(["admin", "none", "browser"]),
                cover=False, note="unknown path %s" % path[:60]))


def http_junk(fz, rng, known):
    """A request malformed at the HTTP level, on a raw socket."""
    method, template = rng.choice(known)
    kinds = {"bot_id": "bot", "task_id": "task", "source_id": "source", "faq_id": "faq",
             "intent_id": "intent", "name": "job", "queue": "queue",
             "notification_id": "notification", "conversation_id": "conversation"}
    path, _ = fz.fill(template, kinds, rng, 0.9)
    if template.startswith("/static/"):
        path = "/static/app.css"
    target = path if isinstance(path, bytes) else path.encode()
    m = method.encode()
    auth = ("Authorization: Bearer %s" % fz.ctx.token).encode()
    body = b'{"name": "Chunky", "message": "hello", "question": "q", "answer": "a"}'
    cases = [
        ("headers over the limit", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nX-Big: " + b"a" * (300 * 1024) + b"\r\nConnection: close\r\n\r\n"),
        ("2000 headers", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth + b"\r\n" +
         b"".join(b"X-H%d: v\r\n" % i for i in range(2000)) + b"Connection: close\r\n\r\n"),
        ("garbage request line", b"GARBAGE\r\n\r\n"),
        ("method only", b"GET\r\n\r\n"),
        ("HTTP/9.9", b"GET " + target + b" HTTP/9.9\r\nHost: {HOST}\r\n\r\n"),
        ("HTTP/1.0 no Host", m + b" " + target + b" HTTP/1.0\r\n" + auth + b"\r\n\r\n"),
        ("HTTP/0.9", b"GET " + target + b"\r\n\r\n"),
        ("leading CRLFs", b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: {HOST}\r\n"
         b"Connection: close\r\n\r\n"),
        ("absolute-form target", m + b" http://evil.example" + target + b" HTTP/1.1\r\n"
         b"Host: {HOST}\r\n" + auth + b"\r\nConnection: close\r\n\r\n"),
        ("asterisk target", b"OPTIONS * HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        ("CONNECT", b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        ("header without colon", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\nBad Header"
         b"\r\nConnection: close\r\n\r\n"),
        ("space before colon", m + b" " + target + b" HTTP/1.1\r\nHost : {HOST}\r\n"
         b"Connection: close\r\n\r\n"),
        ("obs-fold", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\nX-A: one\r\n two\r\n" +
         auth + b"\r\nConnection: close\r\n\r\n"),
        ("NUL in header", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\nX-A: a\x00b\r\n" +
         auth + b"\r\nConnection: close\r\n\r\n"),
        ("bad Content-Length", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nContent-Length: abc\r\nConnection: close\r\n\r\n" + body),
        ("negative Content-Length", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nContent-Length: -1\r\nConnection: close\r\n\r\n" + body),
        ("two Content-Lengths", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nContent-Length: 3\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
         + body),
        ("Content-Length list", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nContent-Length: 1, 2\r\nConnection: close\r\n\r\n" + body),
        ("Content-Length past the limit", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" +
         auth + b"\r\nContent-Length: 1000000000000\r\nConnection: close\r\n\r\n"),
        ("Content-Length shorter than the body", m + b" " + target + b" HTTP/1.1\r\n"
         b"Host: {HOST}\r\n" + auth + b"\r\nContent-Type: application/json\r\n"
         b"Content-Length: 5\r\nConnection: close\r\n\r\n" + body),
        ("Content-Length and chunked", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
         b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"),
        ("valid chunked body", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
         b"Connection: close\r\n\r\n" + b"%x\r\n" % len(body[:10]) + body[:10] + b"\r\n" +
         b"%x;ext=1\r\n" % len(body[10:]) + body[10:] + b"\r\n0\r\n\r\n"),
        ("bad chunk size", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ("huge chunk size", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nffffffffffffffff\r\n"
         b"abc\r\n0\r\n\r\n"),
        ("chunked with trailers", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n"
         b"X-Trailer: 1\r\n\r\n"),
        ("Expect: 100-continue", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n"
         b"Connection: close\r\n\r\n" % len(body) + body),
        ("no Host", m + b" " + target + b" HTTP/1.1\r\n" + auth + b"\r\nConnection: close\r\n\r\n"),
        ("evil Host", m + b" " + target + b" HTTP/1.1\r\nHost: evil.example\r\n" + auth +
         b"\r\nConnection: close\r\n\r\n"),
        ("bad Host port", m + b" " + target + b" HTTP/1.1\r\nHost: [::1]:99999\r\n" + auth +
         b"\r\nConnection: close\r\n\r\n"),
        ("long Host", m + b" " + target + b" HTTP/1.1\r\nHost: " + b"a" * 1000 + b"\r\n" + auth +
         b"\r\nConnection: close\r\n\r\n"),
        ("two Hosts", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\nHost: evil.example\r\n"
         + auth + b"\r\nConnection: close\r\n\r\n"),
        ("non-UTF-8 in target", m + b" " + target + b"\xff\xfe HTTP/1.1\r\nHost: {HOST}\r\n" +
         auth + b"\r\nConnection: close\r\n\r\n"),
        ("lowercase method", m.lower() + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n" + auth +
         b"\r\nConnection: close\r\n\r\n"),
        ("bare LF line ends", m + b" " + target + b" HTTP/1.1\nHost: {HOST}\n" + auth +
         b"\nConnection: close\n\n"),
        ("Authorization with non-ASCII", m + b" " + target + b" HTTP/1.1\r\nHost: {HOST}\r\n"
         b"Authorization: Bearer \xc3\xa9\xff\r\nConnection: close\r\n\r\n"),
    ]
    note, data = rng.choice(cases)
    bad = b"Authorization: Bearer \xc3" in data
    fz.send(Req(method, template, path, raw_bytes=data, cover=False,
                note="HTTP-level: " + note, bad_address=bad,
                may_go_unanswered=note in MAY_GO_UNANSWERED))


# waitress ends header lines at CRLF only (bare LF: the headers never end, the
# connection guard closes it after HEADER_TIMEOUT) and waits for a declared chunk.
MAY_GO_UNANSWERED = ("bare LF line ends", "huge chunk size")


# -- setup -------------------------------------------------------------------------------

class Context:
    pass


def parse_routes():
    routes = set()
    for name in ("api.py", "pages.py"):
        with open(os.path.join(ROOT, "botlite", "web", name), encoding="utf-8") as handle:
            text = handle.read()
        for verb, path, rest in ROUTE_DECORATOR.findall(text):
            if verb == "route":
                match = re.search(r"method=[\"'](\w+)[\"']", rest)
                method = match.group(1).upper() if match else "GET"
            else:
                method = verb.upper()
            routes.add((method, path))
    return routes


def setup(fz, rng):
    """Bots, FAQs, an intent, uploads, chats, a notification, tasks, a job and the
    shared browser session, through the API (counted as requests)."""
    ctx = fz.ctx
    state = ctx.state

    def admin(method, path, body=None, query=None, route_name=None):
        req = Req(method, route_name or path, path, query=query,
                  headers={"Content-Type": "application/json"} if body is not None else {},
                  body=dumps(body) if body is not None else None, auth="admin", note="setup")
        resp = fz.send(req)
        if resp is None or resp.status >= 400:
            log("setup: %s %s -> %s %s", method, path, resp and resp.status,
                resp and resp.content[:200])
        return resp

    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        resp = fz.send(Req("GET", "/healthz", "/healthz", note="setup: wait for workers"))
        if resp is not None and resp.status == 200:
            break
        time.sleep(1)
    admin("PATCH", "/api/chatbots/default", {"rate_limit_per_minute": 10000},
          route_name="/api/chatbots/<bot_id>")
    admin("POST", "/api/chatbots", {"id": "fuzz-a", "name": "Fuzz A", "greeting": "Hi!",
                                    "fallback_message": "No idea.",
                                    "rate_limit_per_minute": 10000})
    admin("POST", "/api/chatbots", {"id": "fuzz-b", "name": "Fuzz B",
                                    "allowed_domains": ["example.com", "*.shop.example",
                                                        "https://secure.example:8443",
                                                        "localhost:8080"],
                                    "rate_limit_per_minute": 10000})
    for bot_id in ("default", "fuzz-a", "fuzz-b"):
        state.add("bot", bot_id, protect=True)
    for bot_id in ("default", "fuzz-b"):
        state.add("bot_patchable", bot_id, protect=True)
    for queue_name in QUEUES:
        state.add("queue", queue_name, protect=True)
    for bot_id, question, answer in (
            ("fuzz-a", "How long does shipping take?", "Three to five working days."),
            ("fuzz-a", "What is the refund policy?", "30 days, no questions asked."),
            ("default", "What are the opening hours?", "9 to 5.")):
        resp = admin("POST", "/api/chatbots/%s/faqs" % bot_id,
                     {"question": question, "answer": answer},
                     route_name="/api/chatbots/<bot_id>/faqs")
        if resp is not None and resp.status == 201:
            state.add("faq", str(resp.json()["id"]), protect=True)
    resp = admin("POST", "/api/chatbots/fuzz-a/intents",
                 {"name": "order_status", "examples": ["where is my order", "track my package"],
                  "responses": ["Let me check that for you, {bot_name} here."]},
                 route_name="/api/chatbots/<bot_id>/intents")
    if resp is not None and resp.status == 201:
        state.add("intent", str(resp.json()["id"]), protect=True)
        state.add("phrase", "where is my order", protect=True)
    for bot_id, name, data in (
            ("fuzz-a", b"manual.md", text_document(rng, 400)),
            ("default", b"notes.txt", text_document(rng, 200)),
            ("fuzz-b", b"faq.csv", b"question,answer\nshipping,3 days\nrefund,30 days\n")):
        body, header = multipart(rng, [(b"file", name, None, data)])
        resp = fz.send(Req("POST", "/api/chatbots/<bot_id>/sources",
                           "/api/chatbots/%s/sources" % bot_id,
                           headers={"Content-Type": header}, body=body, auth="admin",
                           note="setup upload"))
        if resp is not None and resp.status in (200, 202):
            payload = resp.json() or {}
            state.add("source", payload.get("source_id"), protect=True)
            state.add("task", payload.get("task_id"), protect=True)
    for bot_id, message, origin in (("fuzz-a", "hello", None),
                                    ("fuzz-a", "How long does shipping take?", None),
                                    ("fuzz-a", "where is my order", None),
                                    ("default", "What are the opening hours?", None),
                                    ("fuzz-b", "shipping", "https://example.com")):
        resp = fz.send(Req("POST", "/api/chatbots/<bot_id>/chat", "/api/chatbots/%s/chat" % bot_id,
                           headers=dict({"Content-Type": "application/json"},
                                        **({"Origin": origin} if origin else {})),
                           body=dumps({"message": message}), note="setup chat"))
        if resp is not None and resp.status == 200:
            payload = resp.json()
            state.add("message", (payload["message_id"], payload["session_id"]), protect=True)
    pair = state.pick("message", rng)
    if pair:
        admin("POST", "/api/messages/%s/feedback" % pair[0],
              {"helpful": True, "session_id": pair[1]},
              route_name="/api/messages/<message_id>/feedback")
    for body in ({"name": "send_notification", "args": ["admin", "Fuzz", "hello"]},
                 {"name": "health_check", "delay": 3600},
                 {"name": "send_notification", "args": ["fuzzer", "Later", "x"], "delay": 7200}):
        resp = admin("POST", "/api/tasks", body)
        if resp is not None and resp.status == 202:
            state.add("task", (resp.json() or {}).get("task_id"), protect=True)
    resp = admin("POST", "/api/schedule", {"name": "fuzz-job", "task": "health_check",
                                           "crontab": "0 3 * * *"})
    state.add("job", "fuzz-job", protect=True)
    resp = admin("GET", "/api/schedule")
    for job in (resp.json() or {}).get("jobs", []) if resp is not None else []:
        state.add("job", job.get("name"), protect=True)
    # The shared browser session.
    session = throwaway_login(fz, rng)
    if session is None or session[1] is None:
        raise RuntimeError("could not log in with the admin token through /login")
    ctx.browser_secret, ctx.csrf = session
    # Wait for the uploads (their "Document ready" notifications) and the first task.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        resp = admin("GET", "/api/notifications", query=[("user_id", "admin")])
        notes = (resp.json() or {}).get("notifications", []) if resp is not None else []
        if len(notes) >= 3:
            break
        time.sleep(1)
    for note in notes:
        state.add("notification", str(note["id"]), protect=True)
    resp = admin("GET", "/api/tasks", query=[("limit", "100")])
    for task in (resp.json() or {}).get("tasks", []) if resp is not None else []:
        state.add("task", task.get("task_id"), protect=True)
    for bot_id in ("fuzz-a", "default", "fuzz-b"):
        resp = admin("GET", "/api/chatbots/%s/conversations" % bot_id,
                     route_name="/api/chatbots/<bot_id>/conversations")
        for conv in (resp.json() or {}).get("conversations", []) if resp is not None else []:
            state.add("conversation", conv["id"], protect=True)
    log("setup done: %s", {k: len(v) for k, v in state.pools.items()})


def check_health(fz):
    """(healthy, status, body) of one /healthz with the admin token, not counted."""
    ctx = fz.ctx
    try:
        response = make_session(GOOD_ADDRESS).get(
            "http://%s:%d/healthz" % (ctx.host, ctx.port),
            headers={"Authorization": "Bearer " + ctx.token}, timeout=ctx.timeout)
    except requests.RequestException as exc:
        return False, None, repr(exc)[:200]
    try:
        status = response.json().get("status")
    except ValueError:
        status = None
    return response.status_code == 200 and status == "ok", response.status_code, \
        response.text[:300]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=12000,
                        help="requests to send in all, setup included (default 12000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--clients", type=int, default=4,
                        help="client threads sending at once (default 4)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds per request before it counts as a timeout (default 30)")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="stop sending after this long even if requests are left "
                             "(default 900)")
    parser.add_argument("--max-upload-mb", type=int, default=1,
                        help="BOTLITE_MAX_UPLOAD_MB of the server (default 1)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir (data dir and server.log)")
    opts = parser.parse_args(argv)
    if opts.requests < 1 or opts.clients < 1 or opts.timeout <= 0:
        parser.error("--requests and --clients >= 1, --timeout > 0")

    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="botlite-fuzz-")
    server_log = ServerLog(os.path.join(tmp, "server.log"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTLITE_")}
    env.update(PYTHONUNBUFFERED="1", BOTLITE_MAX_UPLOAD_MB=str(opts.max_upload_mb),
               PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""))
    routes = parse_routes()
    out = {"bench": "fuzz", "checkout": ROOT, "seed": opts.seed, "clients": opts.clients}
    server = None
    ctx = Context()
    ctx.stop = threading.Event()
    ctx.timeout = opts.timeout
    ctx.state = State()
    ctx.server_log = server_log
    ctx.stats = Stats(server_log, opts.requests)

    def stop_signal(signum, frame):
        ctx.stop.set()
        raise KeyboardInterrupt
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop_signal)

    healthy = None
    try:
        server = Server(os.path.join(tmp, "data"), env, server_log)
        ctx.host, ctx.port, ctx.token = server.wait_ready()
        log("server on %s:%d; %d routes in botlite/web", ctx.host, ctx.port, len(routes))
        ctx.deadline = time.monotonic() + opts.max_seconds
        main_fuzzer = Fuzzer(ctx, 0, opts.seed)
        try:
            setup(main_fuzzer, random.Random(opts.seed))
        except BudgetSpent:
            pass
        fuzzers = [main_fuzzer] + [Fuzzer(ctx, i, opts.seed) for i in range(1, opts.clients)]
        threads = [threading.Thread(target=f.run, args=(routes,), daemon=True)
                   for f in fuzzers]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.2)
        healthy, status, body = check_health(main_fuzzer)
        if not healthy:
            log("/healthz after the fuzz: %s %s", status, body)
            out["healthz_after"] = {"status": status, "body": body}
        out["server_alive_after"] = server.alive()
    except KeyboardInterrupt:
        ctx.stop.set()
        log("interrupted")
        out["interrupted"] = True
    except Exception as exc:
        ctx.stop.set()
        log("failed: %r", exc)
        out["error"] = repr(exc)[:300]
    finally:
        if server is not None:
            out["server_exit"] = server.stop()
            time.sleep(0.2)  # the last stderr lines

    stats = ctx.stats
    covered = sorted(stats.covered & routes)
    unattributed = collections.OrderedDict()
    for record in server_log.unclaimed_errors():
        exception, tail = exception_of(record)
        key = (record["logger"], exception)
        entry = unattributed.setdefault(key, {"logger": record["logger"], "exception": exception,
                                              "message": record["message"][:200], "count": 0,
                                              "traceback": tail[-4:]})
        entry["count"] += 1
    errors = sorted(stats.errors.values(), key=lambda e: -e["count"])
    route_counts = [stats.per_route[key] for key in covered]
    out.update({
        "requests": stats.sent,
        "endpoints_covered": len(covered),
        "routes_total": len(routes),
        "routes_missed": ["%s %s" % key for key in sorted(routes - set(covered))],
        "requests_per_route_min": min(route_counts) if route_counts else 0,
        "by_status": {k: stats.by_status.get(k, 0)
                      for k in ("1xx", "2xx", "3xx", "4xx", "5xx")},
        "status_codes": {str(code): n for code, n in sorted(stats.codes.items())},
        "server_errors": errors[:MAX_SERVER_ERRORS],
        "distinct_server_errors": len(errors),
        "connection_errors": sum(stats.conn_kinds.values()),
        "connection_error_kinds": dict(stats.conn_kinds),
        "connection_error_samples": stats.conn_samples,
        "unanswered_as_allowed": dict(stats.unanswered),
        "unattributed_log_errors": list(unattributed.values())[:10],
        "seconds": round(time.monotonic() - started, 1),
        "healthy_after": bool(healthy),
    })
    for key in sorted(stats.per_route, key=lambda k: stats.per_route[k]):
        if key in routes:
            log("%5d  %s %s", stats.per_route[key], *key)
    server_log.close()
    if opts.keep:
        log("kept %s", tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out), flush=True)
    failed = (stats.by_status.get("5xx", 0) or out["connection_errors"] or not healthy
              or "error" in out or out.get("interrupted"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
