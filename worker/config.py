"""Configuration: every setting is a command-line flag with an environment variable CONVERSE_<NAME>.

`SETTINGS` is the single list; docs/configuration.md is generated from it (a test keeps them in sync).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Setting:
    name: str  # flag --name-with-dashes, env CONVERSE_NAME_WITH_UNDERSCORES
    default: str | None
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return "CONVERSE_" + self.name.upper().replace("-", "_")

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


def _default_kek() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return str(Path(base) / "converse-worker" / "kek.json")


SETTINGS: tuple[Setting, ...] = (
    Setting("data-dir", "./converse-data", "Embedded storage: SQLite database, sealed recordings, audit log"),
    Setting(
        "kek-file",
        None,
        "Local key-encryption key file (default ~/.config/converse-worker/kek.json, "
        "outside the data directory)",
    ),
    Setting(
        "model",
        None,
        "Speech model: tiny.en (bundled, the default) or base (the `base` extra); see media/models.py",
    ),
    Setting("model-path", None, "Any CTranslate2 Whisper model directory (instead of --model)"),
    Setting("language", "en", "Language a multilingual model is pinned to (English-only models ignore it)"),
    Setting("asr-beam", "1", "Decoder beam size (1: greedy)"),
    Setting("asr-prompt", "", "Domain words given to the decoder as previous text (not logged)"),
    Setting("asr-threads", None, "ASR worker threads (default: number of CPU cores)"),
    Setting("asr-mode", "short", "Encoder window: 'short' (sized to the utterance) or 'padded' (30 s)"),
    Setting("org-id", "default", "Organisation of calls taken by this worker"),
    Setting("http-host", "127.0.0.1", "HTTP bind address"),
    Setting("http-port", "8080", "HTTP port"),
    Setting("api-token", None, "Static bearer token (service principal without MFA)", secret=True),
    Setting("database-url", None, "postgresql://... for the scale-out backend", secret=True),
    Setting("object-store-url", None, "s3://BUCKET?endpoint=http://HOST:PORT for the scale-out backend"),
    Setting("ice-servers", "", "Comma-separated STUN/TURN URLs (none by default)"),
    Setting("udp-ports", "", "UDP port range for media, e.g. 40000-40100 (any by default)"),
    Setting("max-calls", "32", "Admission limit: concurrent calls"),
    Setting(
        "max-call-seconds",
        "3600",
        "A call longer than this is ended and sealed (at most 86400: retention deletes a call that never "
        "ended, its worker killed, once it started two days before the retention cutoff)",
    ),
    Setting("no-media-seconds", "20", "A call with no media for this long is ended and sealed"),
    Setting(
        "pod-id",
        None,
        "This worker's name, stored on each call it takes (default: the host name, in Kubernetes the pod "
        'name); on start it marks its own calls left active by a kill failed ("worker restarted")',
    ),
    Setting("drain-seconds", "30", "On SIGTERM, how long active calls may continue before they are ended"),
    Setting(
        "retention-interval-seconds",
        "3600",
        "How often `serve` runs the retention sweeper (deletes calls past their organisation's retention "
        "period, audited; safe on several pods at once); 0 turns the sweeper off",
    ),
    Setting("loopback-only", "false", "Media on 127.0.0.1 only (tests, single-host demos)"),
    Setting("partials", "false", "Interim transcripts for the live view (true/false)"),
    Setting(
        "speech-batch-seconds",
        "0.1",
        "Decode/VAD tick: frames gathered this long cross to the thread, all tracks in one hop; adds at most "
        "this to time to final",
    ),
    Setting(
        "max-tracks",
        "8",
        "Media sections (audio tracks) one WHIP offer may carry; an offer with more is refused with 400",
    ),
    Setting(
        "variable-names",
        "",
        "Comma-separated call variable names this deployment uses beyond the built-in ones (e.g. member_id): "
        "each keeps its own placeholder ([MEMBER_ID]); any other undeclared name is redacted as [VARIABLE]",
    ),
    Setting(
        "cors-origins",
        "",
        "Comma-separated origins (https://app.example.org) whose pages may call /whip and /v1/ from a "
        "browser; none by default",
    ),
    Setting("log-format", "json", "Log format: json or console"),
    Setting("log-level", "info", "Log level"),
)


def add_settings(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    for s in SETTINGS:
        if names is not None and s.name not in names:
            continue
        parser.add_argument(
            f"--{s.name}",
            dest=s.dest,
            default=os.environ.get(s.env, s.default),
            help=f"{s.help} (env {s.env})",
        )


def split_list(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def kek_path(value: str | None) -> Path:
    return Path(value) if value else Path(_default_kek())


def render_markdown() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Every setting is a flag and an environment variable. Generated from `worker/config.py`.",
        "",
        "| flag | environment | default | meaning |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = "(secret)" if s.secret else (f"`{s.default}`" if s.default else "—")
        lines.append(f"| `--{s.name}` | `{s.env}` | {default} | {s.help} |")
    lines += [
        "",
        "Credentials for the S3 store come from the standard `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` "
        "(and optionally `AWS_REGION`) variables.",
        "",
        "## Environment only",
        "",
        "These have no flag (secrets stay off the command line and out of `ps`).",
        "",
        "| environment | default | meaning |",
        "|---|---|---|",
        *(f"| `{env}` | {default} | {meaning} |" for env, default, meaning in ENV_ONLY),
        *_admission_rows(),
        "",
    ]
    return "\n".join(lines)


# Read where they are used (worker/auth/security.py, worker/cli/guard.py, worker/cli/call.py).
ENV_ONLY: tuple[tuple[str, str, str], ...] = (
    (
        "CONVERSE_OIDC_ISSUER",
        "—",
        "Issuer (`iss`) of an external OIDC provider whose tokens are trusted beside the embedded issuer's",
    ),
    ("CONVERSE_OIDC_AUDIENCE", "`converse-worker`", "Audience (`aud`) the OIDC provider's tokens must name"),
    (
        "CONVERSE_OIDC_JWKS",
        "—",
        "The provider's JWKS: an https:// URL or a file path (public keys only; `oct` keys are ignored)",
    ),
    (
        "CONVERSE_TOKEN",
        "(secret)",
        "The CLI caller's bearer JWT (as `--token`): reads and admin commands then act as that identity, "
        "with its role, organisation and MFA, exactly as over HTTP",
    ),
    (
        "CONVERSE_SFRAME_KEY",
        "(secret)",
        "`call`: base64url SFrame base key to send end-to-end encrypted frames (as `--sframe-key`)",
    ),
    (
        "CONVERSE_SFRAME_COUNTER_DIR",
        "`<data dir>/sframe-counters`",
        "`call`: where SFrame counters persist across runs, so no (key, kid, counter) repeats "
        "(as `--counter-dir`)",
    ),
)


def _admission_rows() -> list[str]:
    """`CONVERSE_ADMISSION_<FIELD>` overrides of `worker.http.admission.AdmissionConfig`, a row per field."""
    from dataclasses import fields

    from worker.http.admission import AdmissionConfig

    defaults = AdmissionConfig()
    return [
        f"| `CONVERSE_ADMISSION_{f.name.upper()}` | `{getattr(defaults, f.name)}` | "
        f"Admission control (`serve`): `{f.name}`, see worker/http/admission.py |"
        for f in fields(AdmissionConfig)
    ]


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """What `serve` hands its HTTP app (`worker.http.app.build_app`)."""

    cors_origins: frozenset[str] = frozenset()
    max_tracks: int = 8


def http_settings(args: argparse.Namespace) -> HttpSettings:
    """Apply `--variable-names` (the declared placeholder names) and read `--cors-origins`, `--max-tracks`.

    A bad entry is a ValueError that names the setting (and an entry's position, never its text).
    """
    from redact.variables import declare_names
    from worker.http.cors import parse_origins

    declare_names(split_list(getattr(args, "variable_names", "")))
    raw = str(getattr(args, "max_tracks", "8") or "8").strip()
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 64:
        raise ValueError("max-tracks must be a whole number from 1 to 64")
    return HttpSettings(parse_origins(split_list(getattr(args, "cors_origins", ""))), int(raw))
