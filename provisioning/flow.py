"""One provisioning run: answers -> checked identity and config -> files -> self-test
-> registration -> report. Interactive and non-interactive runs both end here.

Order matters for "nothing half-done": every input is checked (answers, the
config models, the certificate against the key) before the first file is
written; then the files are committed together, config last; only then does
the self-test run, against the files as the daemon will read them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpiozero.exc import BadPinFactory
from gpiozero.pins import Factory

from shaobing.agent.config import (
    INSTALLED_CONFIG_DIR,
    Config,
    ConfigError,
    Problem,
    parse_config,
    validate_config,
)
from shaobing.agent.runtime import agent_version
from shaobing.core.atomic import FileSet, atomic_write
from shaobing.core.i18n import catalogue
from shaobing.core.signing import load_public
from shaobing.drivers.gpio import NO_PIN_FACTORY, make_pin_factory
from shaobing.models.fetch import ENV_MODEL_DIR
from shaobing.provisioning import answers as A
from shaobing.provisioning import report as R
from shaobing.provisioning import rerun
from shaobing.provisioning.identity import IdentityError, build_identity
from shaobing.provisioning.selftest import (
    DEFAULT_FACTORIES,
    FAIL,
    CheckFactory,
    Context,
    Result,
    build_checks,
    run_checks,
    status_word,
    words,
)

REPORT_JSON, REPORT_TEXT = "provisioning-report.json", "provisioning-report.txt"
# The report's identity for plain MQTT: no key, no CSR, no certificate.
PLAIN_IDENTITY: dict[str, Any] = {"key": None, "plain_mqtt": True}


class ProvisionError(Exception):
    """Bad input: nothing was written. ``problems`` say where and what is expected."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


@dataclass
class Options:
    config_dir: Path = INSTALLED_CONFIG_DIR
    state_dir: Path = Path("/var/lib/shaobing")
    pin_factory: Factory | None = None
    factories: tuple[CheckFactory, ...] = DEFAULT_FACTORIES
    say: Callable[[str], None] = print
    register: bool = True
    # Camera sources served from above (the simulator's sim: scenes); see cli/schemes.py.
    camera_schemes: Any = None
    # The installer's language for what is said and the text report (core/i18n.py).
    lang: str = "en"
    # False when the answers came from the kept file itself: rewriting it would mask
    # the secrets the installer just filled in.
    keep_answers: bool = True


@dataclass
class Outcome:
    config: Config
    results: list[Result]
    report: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    registered: bool = False

    @property
    def ok(self) -> bool:
        return not any(r.status == FAIL for r in self.results)


def prepare(answers: A.Answers, opts: Options) -> tuple[Config, FileSet, dict[str, Any], list[str]]:
    """Check everything and stage the files; raises ProvisionError, writes nothing durable."""
    cdir = opts.config_dir
    site = answers.site
    ident_answers = answers.identity
    existing_cert = cdir / A.CERT_NAME
    # A re-run after the county's certificate was installed keeps using it.
    cert_path = ident_answers.cert or (
        existing_cert
        if existing_cert.exists() and (cdir / A.KEY_NAME).exists() and not ident_answers.new_key
        else None
    )
    ca_path = ident_answers.ca or (cdir / A.CA_NAME if (cdir / A.CA_NAME).exists() else None)
    data, problems = A.plan_config(
        answers,
        cdir,
        opts.state_dir,
        has_cert=cert_path is not None,
        has_ca=ca_path is not None or not answers.broker.tls,
    )
    identity = None
    try:
        # Plain MQTT (--no-tls, test benches) uses no key or certificate: none is made,
        # so no CSR goes to a county CA that will never be asked for one.
        identity = (
            None
            if not answers.broker.tls
            else build_identity(
                device_id=answers.device_id,
                village_code=str(site.get("village_code", "")),
                village_name=str(site.get("village_name", "")),
                existing_key=cdir / A.KEY_NAME,
                key=ident_answers.key,
                cert=cert_path,
                ca=ca_path if answers.broker.tls else None,
                new_key=ident_answers.new_key,
            )
        )
    except IdentityError as exc:
        field_name, _, message = str(exc).partition(": ")
        problems.append(Problem(f"identity.{field_name}", message))
    problems += rerun.state_dir_problems(opts.state_dir)
    if problems:
        raise ProvisionError(problems)
    # Written from the validated model, so the file says NO/NC and "0123..."
    # in canonical form whatever YAML made of the answers (NO -> false).
    validated = validate_config(data)
    assert validated is not None
    text = A.render_config(validated.model_dump(mode="json", exclude_unset=True), answers.device_id)
    try:
        # The exact parser `shaobing config check` and `shaobing run` use.
        config = parse_config(text, source=str(cdir / A.CONFIG_NAME))
    except ConfigError as exc:  # cannot happen if plan_config passed; belt and braces
        raise ProvisionError(exc.problems) from exc
    files = FileSet()
    try:
        if identity is not None:
            files.add(cdir / A.KEY_NAME, identity.key_pem())
            if identity.csr is not None:
                files.add(cdir / A.CSR_NAME, identity.csr_pem() or b"")
            if identity.cert is not None:
                files.add(cdir / A.CERT_NAME, identity.cert_pem() or b"")
            if identity.ca_pem is not None:
                files.add(cdir / A.CA_NAME, identity.ca_pem)
        if answers.command_key is not None:
            # A public key: readable by all is fine (and lets a technician check its kid).
            pem = load_public(answers.command_key).pem()
            files.add(cdir / A.COMMAND_KEY_NAME, pem, mode=0o644)
        files.add(cdir / A.CONFIG_NAME, text)  # last: it names the files above
    except OSError as exc:
        files.discard()
        raise ProvisionError(
            [Problem("--config-dir", f"cannot write in {cdir}: {exc.strerror} (run with sudo?)")]
        ) from exc
    if identity is None:
        return config, files, dict(PLAIN_IDENTITY), []
    return config, files, identity.summary(), identity.warnings


def provision(answers: A.Answers, opts: Options) -> Outcome:
    started = time.monotonic()
    version = agent_version()
    say = opts.say
    _ = catalogue(opts.lang)
    config, files, identity, warnings = prepare(answers, opts)
    for w in warnings:
        say(_("WARNING: {warning}").format(warning=w))
    written = files.commit()
    say(_("wrote {files}").format(files=", ".join(str(p) for p in written)))
    # Before the self-test: a failure from here on must not cost the answers.
    if opts.keep_answers:
        kept = rerun.save_answers(answers_data(answers), opts.config_dir)
        say(
            _("answers kept in {path} (re-run: shaobing provision --answers {path})").format(
                path=kept
            )
        )
    if identity.get("csr"):
        say(
            _(
                "no device certificate yet: send {csr} to the county CA, "
                "then run provision again with --cert"
            ).format(csr=opts.config_dir / A.CSR_NAME)
        )
    results = selftest(config, answers.selftest, opts, version, answers.selftest_command)
    registered = None
    ctx_session = results.session
    if ctx_session is not None:
        try:
            if opts.register and not any(
                r.kind == "broker" and r.status == FAIL for r in results.results
            ):
                payload = R.registration(config, identity, results.results, version)
                topic = ctx_session.topics.register
                if ctx_session.publish_retained(
                    topic, json.dumps(payload, ensure_ascii=False).encode(), 10
                ):
                    registered = topic
                    say(_("registered on {topic}").format(topic=topic))
        finally:
            ctx_session.close()
    file_map = {
        "config": str(opts.config_dir / A.CONFIG_NAME),
        **({"key": str(opts.config_dir / A.KEY_NAME)} if identity.get("key") else {}),
        **({"csr": str(opts.config_dir / A.CSR_NAME)} if identity.get("csr") else {}),
        **(
            {"cert": str(opts.config_dir / A.CERT_NAME)}
            if identity.get("fingerprint_sha256")
            else {}
        ),
        **(
            {"command_key": str(opts.config_dir / A.COMMAND_KEY_NAME)}
            if answers.command_key is not None
            else {}
        ),
    }
    rep = R.report(
        config,
        identity,
        results.results,
        version,
        file_map,
        warnings,
        time.monotonic() - started,
        registered,
    )
    json_path = atomic_write(opts.config_dir / REPORT_JSON, R.dumps(rep))
    text = R.render_text(rep, results.results, _)
    text_path = atomic_write(opts.config_dir / REPORT_TEXT, text)
    say("\n" + text)
    return Outcome(
        config,
        results.results,
        rep,
        {"report_json": json_path, "report_text": text_path},
        registered is not None,
    )


def answers_data(answers: A.Answers) -> dict[str, Any]:
    """The answers as an answers file holds them, file names absolute (re-run from anywhere)."""
    data = answers.model_dump(mode="json", exclude_none=True)
    ident = data.get("identity") or {}
    for key in ("cert", "key", "ca"):
        if ident.get(key):
            ident[key] = str(Path(ident[key]).expanduser().resolve())
    return data


@dataclass
class _Run:
    results: list[Result]
    session: Any


def _pin_factory(config: Config, opts: Options) -> tuple[Factory | None, str | None]:
    """The pins' factory, or what each GPIO check says when no GPIO library loads."""
    if opts.pin_factory is not None:
        return opts.pin_factory, None
    try:
        return make_pin_factory(config.gpio, pins_used=bool(config.inputs or config.outputs)), None
    except BadPinFactory as exc:
        return None, NO_PIN_FACTORY.format(backend=config.gpio.backend, reason=exc)


def selftest(
    config: Config,
    st: A.SelftestAnswers,
    opts: Options,
    version: str,
    sample_command: Path | None = None,
) -> _Run:
    factory, factory_error = _pin_factory(config, opts)
    _ = catalogue(opts.lang)
    ctx = Context(
        config=config,
        pin_factory=factory,
        walk_test=st.walk_test,
        walk_timeout_s=st.walk_timeout_s,
        pulse_ms=st.pulse_ms,
        broker_timeout_s=st.broker_timeout_s,
        say=lambda text: opts.say(words(text, _)),  # the walk test's prompts
        version=version,
        sample_command=sample_command,
        model_dir=None if os.environ.get(ENV_MODEL_DIR) else opts.state_dir / "models",
        camera_schemes=opts.camera_schemes,
        pin_factory_error=factory_error,
    )
    checks = build_checks(config, ctx, opts.factories)

    def progress(i: int, n: int, check, result: Result | None) -> None:
        if result is None:
            opts.say(f"[{i}/{n}] {_(check.kind)}: {words(check.name, _)} ...")
        else:
            opts.say(f"[{i}/{n}] {status_word(result.status, _)} {words(result.reason, _)}")

    results = list(run_checks(checks, ctx, progress))
    return _Run(results, ctx.session)
