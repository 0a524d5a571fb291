"""The county's command key for the tests: one Ed25519 pair per test process.

The private key stays in memory (the platform client signs with it); each
test's config trusts its public key through a file in the test's tmp_path,
as a provisioned box holds /etc/shaobing/county-command.pub.
"""

from __future__ import annotations

from pathlib import Path

from shaobing.core.signing import PrivateKey, generate

COUNTY: PrivateKey = generate()


def county_public_key(directory: Path, key: PrivateKey = COUNTY) -> Path:
    path = Path(directory) / "county-command.pub"
    path.write_bytes(key.public.pem())
    path.chmod(0o644)  # whatever the umask: others may read a public key, not write it
    return path


def local_test_config(data: dict, directory: Path) -> dict:
    """The example as loaded YAML, turned to a loopback broker and the test county key.

    The examples are secure as written (TLS to the county broker, the county's
    key under /etc/shaobing); a test's broker is a plain loopback Mosquitto.
    """
    data["mqtt"]["host"] = "127.0.0.1"
    data["mqtt"].pop("tls", None)
    data.setdefault("control", {})["command_keys"] = [str(county_public_key(directory))]
    return data


def example_in(directory: Path, example: Path | None = None) -> str:
    """The example's text with its /etc/shaobing files made real under ``directory``.

    The example names the county's CA, the device certificate and key, and the
    county's command key as placeholders; `shaobing config check` reads them.
    """
    from shaobing.simulator.pki import CountyCA

    example = example or Path(__file__).resolve().parents[1] / "examples" / "village-post.yaml"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = CountyCA()
    ca.write_ca(directory / "ca.pem")
    ca.client("sb-130521-dongguan-01").write(directory, "device")
    county_public_key(directory)
    return example.read_text(encoding="utf-8").replace("/etc/shaobing/", f"{directory}/")
