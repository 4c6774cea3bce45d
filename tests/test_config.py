import datetime as dt

import pytest

from ampkit import config as configuration
from ampkit.errors import ConfigError, SecretError

from conftest import API_KEY, SECRET_KEY


def test_layers_defaults_file_env_overrides(tmp_path, monkeypatch):
    (tmp_path / "ampkit.toml").write_text('lookback_hours = 3\nconcurrency = 2\ntime_zone = "America/New_York"\n')
    monkeypatch.setenv("AMPKIT_CONCURRENCY", "5")
    c = configuration.load({"time_zone": "Europe/Berlin"})
    assert c.lookback_hours == 3          # file
    assert c.concurrency == 5             # env beats file
    assert c.time_zone == "Europe/Berlin"  # override beats env
    assert c.settle_seconds == 300        # default


def test_secrets_come_from_env_or_file(tmp_path, monkeypatch):
    monkeypatch.delenv("AMPLITUDE_API_KEY")
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    monkeypatch.setenv("AMPLITUDE_API_KEY_FILE", str(key_file))
    c = configuration.load()
    assert c.api_key == API_KEY and c.secret_key == SECRET_KEY
    assert API_KEY not in repr(c) and SECRET_KEY not in repr(c)
    assert c.public()["api_key"] == "(set)"
    assert c.redact(f"boom {API_KEY} {SECRET_KEY}") == "boom *** ***"


def test_key_files_may_be_named_in_ampkit_toml_and_the_environment_still_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("AMPLITUDE_API_KEY")
    monkeypatch.delenv("AMPLITUDE_SECRET_KEY")
    (tmp_path / "k").write_text("from-file-key\n")
    (tmp_path / "s").write_text("from-file-secret\n")
    (tmp_path / "ampkit.toml").write_text('amplitude_api_key_file = "k"\namplitude_secret_key_file = "s"\n')
    c = configuration.load()
    assert (c.api_key, c.secret_key) == ("from-file-key", "from-file-secret")
    assert c.settings()["amplitude_api_key_file"] == "k" and "from-file" not in str(c.settings())
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    assert configuration.load().api_key == API_KEY
    (tmp_path / "ampkit.toml").write_text('amplitude_api_key_file = "missing"\n')
    monkeypatch.delenv("AMPLITUDE_API_KEY")
    with pytest.raises(ConfigError, match="amplitude_api_key_file names a file that cannot be read"):
        configuration.load()


@pytest.mark.parametrize("overrides", [{"api_key": "x"}, {"amplitude_secret": "x"}, {"token": "x"}])
def test_secrets_refused_as_parameters(overrides):
    with pytest.raises(SecretError, match="looks like a secret|environment"):
        configuration.load(overrides)


def test_secret_in_file_is_refused(tmp_path):
    (tmp_path / "ampkit.toml").write_text('api_key = "abc"\n')
    with pytest.raises(SecretError, match="api_key"):
        configuration.load()


@pytest.mark.parametrize("text, message", [
    ("lookback_hours = ", "not valid TOML"),
    ("colour = 1", "unknown key 'colour'"),
    ('concurrency = "many"', "concurrency"),
    ('time_zone = "Mars/Olympus"', "IANA"),
    ('amplitude_region = "APAC"', "US or EU"),
])
def test_malformed_toml_gives_one_clear_line(tmp_path, text, message):
    (tmp_path / "ampkit.toml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=message) as err:
        configuration.load()
    assert "\n" not in str(err.value)


def test_regions_and_clock():
    eu = configuration.load({"amplitude_region": "EU", "now": "2022-01-02T03:04:05Z"})
    assert eu.ingest_url == "https://api.eu.amplitude.com"
    assert eu.dashboard_url == "https://analytics.eu.amplitude.com"
    assert eu.clock() == dt.datetime(2022, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert configuration.load(env={"AMPKIT_AMPLITUDE_REGION": "eu"}).ingest_url == "https://api.eu.amplitude.com"
    sandbox = configuration.load({"amplitude_url": "http://127.0.0.1:9999/"})
    assert sandbox.ingest_url == sandbox.dashboard_url == "http://127.0.0.1:9999"
