import os
import stat

import pytest

from botlite.auth import admin_token
from botlite.settings import SETTINGS, SettingsError, ensure_data_dir, load_settings


def test_defaults_put_both_sqlite_files_in_the_data_dir(tmp_path):
    settings = load_settings({"data_dir": str(tmp_path)}, environ={})
    assert settings.host == "127.0.0.1" and settings.port == 8000 and settings.workers == 2
    assert settings.database_url == "sqlite:///%s/botlite.db" % tmp_path
    assert settings.broker_url == "sqlite:///%s/queue.db" % tmp_path
    assert settings.allow_private_urls is False and settings.llm_url is None


def test_default_data_dir_is_botlite_data_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).data_dir == str(tmp_path / "botlite-data")


def test_flag_beats_environment_beats_default():
    env = {"BOTLITE_PORT": "9001", "BOTLITE_HOST": "0.0.0.0"}
    settings = load_settings({"port": "9002"}, environ=env)
    assert settings.port == 9002  # flag
    assert settings.host == "0.0.0.0"  # environment
    assert settings.workers == 2  # default
    assert settings.sources["port"] == "--port" and settings.sources["host"] == "BOTLITE_HOST"


def test_a_flag_left_unset_does_not_hide_the_environment():
    settings = load_settings({"port": None}, environ={"BOTLITE_PORT": "9003"})
    assert settings.port == 9003


@pytest.mark.parametrize("env, message", [
    ({"BOTLITE_PORT": "abc"}, "BOTLITE_PORT: 'abc' is not a port number"),
    ({"BOTLITE_PORT": "70000"}, "BOTLITE_PORT: '70000' is not a port number"),
    ({"BOTLITE_WORKERS": "-1"}, "BOTLITE_WORKERS: '-1' must be 0 or more"),
    ({"BOTLITE_DATABASE_URL": "mysql://x/y"}, "BOTLITE_DATABASE_URL: 'mysql://x/y' has an unknown scheme 'mysql'"),
    ({"BOTLITE_BROKER_URL": "amqp://guest@localhost"}, "unknown scheme 'amqp'"),
    ({"BOTLITE_BROKER_URL": "sqlite://relative.db"}, "SQLite URLs look like sqlite:///"),
    ({"BOTLITE_BROKER_URL": "redis://127.0.0.1:6379/x7"}, "the Redis database is a number"),
    ({"BOTLITE_BROKER_URL": "redis://127.0.0.1/queue"}, "the Redis database is a number"),
    ({"BOTLITE_ALLOW_PRIVATE_URLS": "maybe"}, "BOTLITE_ALLOW_PRIVATE_URLS: 'maybe' is not one of"),
    ({"BOTLITE_LLM_URL": "ftp://llm"}, "BOTLITE_LLM_URL: 'ftp://llm' is not an http"),
    ({"BOTLITE_LOG_LEVEL": "chatty"}, "BOTLITE_LOG_LEVEL: 'chatty' is not one of"),
    ({"BOTLITE_SHUTDOWN_TIMEOUT": "soon"}, "BOTLITE_SHUTDOWN_TIMEOUT: 'soon' is not a number"),
])
def test_invalid_values_name_the_setting(env, message):
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_invalid_flag_is_reported_under_the_flag_name():
    with pytest.raises(SettingsError, match=r"^--port: 'abc'"):
        load_settings({"port": "abc"}, environ={})


def test_other_databases_and_brokers_are_accepted():
    settings = load_settings(environ={
        "BOTLITE_DATABASE_URL": "postgresql://u@db/botlite",
        "BOTLITE_BROKER_URL": "redis://127.0.0.1:6379/0"})
    assert settings.database_url == "postgresql://u@db/botlite"
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    for url in ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379/", "rediss://q:6380/12",
                "redis://:p%40ss@q:6379/0", "redis://q:6379/0/", "redis://q/%31",
                "rediss://q/2?ssl_cert_reqs=none"):
        assert load_settings(environ={"BOTLITE_BROKER_URL": url}).broker_url == url


def test_unwritable_data_dir_is_a_settings_error():
    # /proc/self is a directory nobody may create files in, not even root.
    settings = load_settings({"data_dir": "/proc/self"}, environ={})
    with pytest.raises(SettingsError, match="^data directory /proc/self is not writable"):
        ensure_data_dir(settings)


def test_data_dir_under_a_file_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings = load_settings({"data_dir": str(blocker / "data")}, environ={})
    with pytest.raises(SettingsError, match="cannot create data directory"):
        ensure_data_dir(settings)


def test_token_is_generated_once_with_mode_0600(tmp_path):
    settings = load_settings({"data_dir": str(tmp_path)}, environ={})
    first = admin_token(settings)
    assert len(first) >= 32
    assert stat.S_IMODE(os.stat(settings.admin_token_path).st_mode) == 0o600
    assert admin_token(settings) == first


def test_token_from_environment_wins_and_writes_no_file(tmp_path):
    settings = load_settings({"data_dir": str(tmp_path)},
                             environ={"BOTLITE_ADMIN_TOKEN": "s3cret-token-of-the-ops"})
    assert admin_token(settings) == "s3cret-token-of-the-ops"
    assert not os.path.exists(settings.admin_token_path)


@pytest.mark.parametrize("token", ["s3cret", "fifteen-chars!!", "sixteen chars ok"])
def test_a_short_or_spaced_admin_token_is_refused(tmp_path, token):
    with pytest.raises(SettingsError, match=r"^BOTLITE_ADMIN_TOKEN: the admin token must "
                                            r"be at least 16 characters"):
        load_settings({"data_dir": str(tmp_path)}, environ={"BOTLITE_ADMIN_TOKEN": token})


def test_every_setting_has_an_env_var_and_help():
    for setting in SETTINGS:
        assert setting.env.startswith("BOTLITE_") and setting.help


def test_the_data_dir_and_databases_are_private_whatever_the_umask(tmp_path):
    """botlite.db and queue.db hold transcripts and webhook secrets: 0600 in a 0700
    folder, also under a permissive umask and for files an older botlite made 0644."""
    import os
    import stat

    from botlite.app import Botlite
    from botlite.settings import load_settings
    data = tmp_path / "data"
    old = os.umask(0o022)
    try:
        data.mkdir(mode=0o755)
        (data / "queue.db").touch(mode=0o644)
        (data / "kept.db").touch(mode=0o640)  # an operator's choice: closed to others
        app = Botlite.open(load_settings({"data_dir": str(data),
                                          "database_url": "sqlite:///%s" % (data / "kept.db")},
                                         environ={}))
        try:
            app.runner.enqueue("health_check")
            with app.database.connection_context():
                app.database.execute_sql("select 1")
                made = [p for p in data.iterdir() if p.name.startswith("queue.db")]
                kept = stat.S_IMODE(os.stat(data / "kept.db").st_mode)
                modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in made}
        finally:
            app.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert set(modes) >= {"queue.db", "queue.db-wal"}
    assert modes == {name: 0o600 for name in modes}
    assert kept == 0o640
    fresh = tmp_path / "fresh"
    old = os.umask(0o022)
    try:
        Botlite.open(load_settings({"data_dir": str(fresh)}, environ={})).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
    assert {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in fresh.iterdir()
            if p.name.endswith(".db")} == {"botlite.db": 0o600, "queue.db": 0o600}
