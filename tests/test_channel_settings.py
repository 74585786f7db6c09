"""ALERT_CHANNELS and ALERT_TEMPLATES_DIR: read at start, a bad one named, no secret quoted."""

from __future__ import annotations

import pytest

from config import ConfigError, settings_from_env

KEY = "k" * 32
SECRET = "pw-9c1e77aa"


def settings(**env: str):
    return settings_from_env({"ADMIN_API_KEY": KEY, **env})


def test_channels_are_whitespace_separated_each_with_an_optional_filter():
    chosen = settings(
        ALERT_CHANNELS=f"""
            daemon.stale,daemon.recovered=mailto://ops:{SECRET}@mail.example.com?to=oncall@example.com
            json://127.0.0.1:9000/hook?-channel=a,b;c   ntfys://ntfy.sh/fleet-alerts
        """
    ).alert_channels
    mail, hook, ntfy = chosen
    assert mail.events == {"daemon.stale", "daemon.recovered"} and hook.events is None is ntfy.events
    # Commas and semicolons inside a URL belong to the URL.
    assert hook.url == "json://127.0.0.1:9000/hook?-channel=a,b;c"
    assert mail.redacted.startswith("mailto://ops:****@mail.example.com")
    assert [c.wants("daemon.unhealthy") for c in chosen] == [False, True, True]
    assert len({c.fingerprint for c in chosen}) == 3


def test_no_channels_by_default():
    assert settings().alert_channels == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("hooks.slack.com/services/T1/B2/C3", "entry 1 is not an Apprise URL"),
        (f"json://127.0.0.1/a nosuch://u:{SECRET}@host", r"entry 2 \(nosuch://...\) is not a URL Apprise can send to"),
        (f"daemon.stal=json://u:{SECRET}@127.0.0.1/a", r"json://u:\*\*\*\*@127.0.0.1/a\S* filters on daemon.stal, which is not an alert type"),
        (f",=json://u:{SECRET}@127.0.0.1/a", "entry 1 has an empty event filter"),
        (f"json://u:{SECRET}@127.0.0.1/a json://u:{SECRET}@127.0.0.1/a", "json://u:\\*\\*\\*\\*@127.0.0.1/a.* is listed twice"),
    ],
)
def test_a_bad_channel_stops_the_start_without_quoting_its_secret(value, message):
    with pytest.raises(ConfigError, match=f"^ALERT_CHANNELS: {message}") as refused:
        settings(ALERT_CHANNELS=value)
    assert SECRET not in str(refused.value)


def test_a_filter_on_a_type_alert_events_leaves_out_is_refused():
    with pytest.raises(ConfigError, match="filters on daemon.deregistered, which ALERT_EVENTS leaves out"):
        settings(ALERT_EVENTS="daemon.stale", ALERT_CHANNELS="daemon.deregistered=json://127.0.0.1/a")


def test_templates_are_read_from_the_directory(tmp_path):
    (tmp_path / "daemon.stale.txt").write_text("$daemonId is gone\nSince $lastHeartbeat, costs $$0.\n")
    chosen = settings(ALERT_TEMPLATES_DIR=str(tmp_path))
    [template] = chosen.alert_templates
    assert (template.alert_type, template.title, template.body) == (
        "daemon.stale", "$daemonId is gone", "Since $lastHeartbeat, costs $$0."
    )


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("daemon.gone.txt", "t\nb", "daemon.gone.txt: name it <alert type>.txt"),
        ("daemon.stale.md", "t\nb", "daemon.stale.md: name it <alert type>.txt"),
        ("daemon.stale.txt", "Down for $downFor\nb", r"\$downFor is not available for daemon.stale; it has \$daemonId"),
        ("daemon.recovered.txt", "t\ncosts $5", "a '\\$' that starts no placeholder"),
        ("daemon.unhealthy.txt", "\nbody only", "the first line \\(the title\\) is empty"),
    ],
)
def test_a_bad_template_stops_the_start_naming_the_file(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=f"^ALERT_TEMPLATES_DIR: .*{message}"):
        settings(ALERT_TEMPLATES_DIR=str(tmp_path))


def test_a_missing_templates_dir_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="ALERT_TEMPLATES_DIR: .* is not a directory"):
        settings(ALERT_TEMPLATES_DIR=str(tmp_path / "nowhere"))
