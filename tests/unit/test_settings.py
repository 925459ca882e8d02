"""Settings come in sections; every environment variable keeps its flat BROKER_ name."""

from __future__ import annotations

import pytest

from app.config import ENV, RemoteAeSeed, Settings, SettingsError, env_name, load_settings

SAMPLES: dict[str, tuple[str, object]] = {
    "BROKER_DATABASE_URL": ("sqlite:///x.db", "sqlite:///x.db"),
    "BROKER_AE_TITLE": ("BROKER2", "BROKER2"),
    "BROKER_DICOM_BIND_HOST": ("127.0.0.3", "127.0.0.3"),
    "BROKER_DICOM_PORT": ("1104", 1104),
    "BROKER_ALLOWED_CALLING_AES": (
        "CT01, MR01:find+ECHO",
        ("CT01", "MR01:echo+find"),
    ),
    "BROKER_MAX_ASSOCIATIONS_PER_AE": ("3", 3),
    "BROKER_DICOM_MAX_CONNECTIONS": ("40", 40),
    "BROKER_DICOM_ARTIM_TIMEOUT": ("2.5", 2.5),
    "BROKER_MAX_ASSOCIATION_SECONDS": ("600", 600.0),
    "BROKER_MAX_ASSOCIATE_RQ_BYTES": ("32768", 32768),
    "BROKER_DICOM_TLS_PORT": ("2762", 2762),
    "BROKER_MWL_MAX_RESULTS": ("5", 5),
    "BROKER_MWL_NAME_CASE_INSENSITIVE": ("false", False),
    "BROKER_MWL_DEFAULT_POLICY": ("calling_ae", "calling_ae"),
    "BROKER_HL7_BIND_HOST": ("::1", "::1"),
    "BROKER_HL7_PORT": ("2576", 2576),
    "BROKER_HL7_TLS_PORT": ("0", 0),
    "BROKER_HL7_ORDER_CONTROL": ('{"nw": "SCHEDULED"}', {"NW": "SCHEDULED"}),
    "BROKER_HL7_MISSING_ACCESSION": ("accept", "accept"),
    "BROKER_HL7_MISSING_START": ("reject", "reject"),
    "BROKER_HL7_IDLE_TIMEOUT": ("45", 45.0),
    "BROKER_HL7_MAX_CONNECTIONS": ("50", 50),
    "BROKER_HL7_MAX_CONNECTIONS_PER_ADDRESS": ("5", 5),
    "BROKER_HL7_DB_DOWN": ("AE", "ae"),
    "BROKER_HL7_ALLOWED_SENDERS": ("RIS, PACS^HOSP", "RIS, PACS^HOSP"),
    "BROKER_HL7_ALLOWED_ADDRESSES": ("10.0.0.0/8, 192.168.1.5", "10.0.0.0/8, 192.168.1.5"),
    "BROKER_HTTP_BIND_HOST": ("127.0.0.1", "127.0.0.1"),
    "BROKER_HTTP_PORT": ("8080", 8080),
    "BROKER_COOKIE_SECURE": ("true", True),
    "BROKER_HTTP_MAX_BODY_BYTES": ("65536", 65536),
    "BROKER_METRICS_PUBLIC": ("true", True),
    "BROKER_TLS_CERT": ("/etc/mwl/broker.crt", None),
    "BROKER_TLS_KEY": ("/etc/mwl/broker.key", None),
    "BROKER_TLS_CA": ("/etc/mwl/ca.pem", None),
    "BROKER_TLS_CLIENT_CERT": ("Required", "required"),
    "BROKER_TLS_CHECK_HOSTNAME": ("false", False),
    "BROKER_STORAGE_DIR": ("/srv/dicom", None),
    "BROKER_STORAGE_DUPLICATE": ("Replace", "replace"),
    "BROKER_STORAGE_RETENTION_DAYS": ("30", 30),
    "BROKER_STORAGE_RETENTION_REQUIRES_COMMITMENT": ("true", True),
    "BROKER_REMOTE_AES": (
        "PACS@pacs:104=store+commit+mpps",
        (
            RemoteAeSeed(
                ae_title="PACS", host="pacs", port=104, services=("store", "commit", "mpps")
            ),
        ),
    ),
    "BROKER_RIS_HL7_ENDPOINT": ("ris:2575", "ris:2575"),
    "BROKER_RIS_HL7_TLS": ("true", True),
    "BROKER_MPPS_FORWARD": ("PACS@pacs:104", ("PACS@pacs:104",)),
    "BROKER_OUTBOX_RETRY_MIN": ("1.5", 1.5),
    "BROKER_STGCMT_REPORT_DELAY": ("0.5", 0.5),
}


def value_at(settings: Settings, variable: str) -> object:
    section, field = ENV[variable.removeprefix("BROKER_").lower()]
    holder = settings if section is None else getattr(settings, section)
    return getattr(holder, field)


# What some samples need beside them to be valid (a TLS port needs a certificate...).
COMPANIONS: dict[str, str] = {
    "BROKER_TLS_CERT": "/etc/mwl/broker.crt",
    "BROKER_TLS_KEY": "/etc/mwl/broker.key",
    "BROKER_TLS_CA": "/etc/mwl/ca.pem",
}


@pytest.mark.parametrize("variable", sorted(SAMPLES))
def test_each_variable_lands_in_its_section(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, expected = SAMPLES[variable]
    for companion, value in COMPANIONS.items():
        monkeypatch.setenv(companion, value)
    monkeypatch.setenv(variable, raw)
    found = value_at(load_settings(_env_file=None), variable)
    assert found == expected if expected is not None else str(found) == raw


def test_every_variable_has_one_place_and_its_name_back() -> None:
    assert len(set(ENV.values())) == len(ENV)
    for flat, (section, field) in ENV.items():
        assert env_name(section, field) == f"BROKER_{flat.upper()}"


def test_bind_host_is_every_listeners(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_BIND_HOST", "127.0.0.2")
    settings = load_settings(_env_file=None)
    assert settings.dicom.bind_host == settings.hl7.bind_host == settings.http.bind_host
    assert settings.http.bind_host == "127.0.0.2"
    assert load_settings(_env_file=None, bind_host="::1").dicom.bind_host == "::1"


def test_a_listeners_own_bind_host_wins_over_the_common_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # set in both orders: the environment's order must not matter
    monkeypatch.setenv("BROKER_HL7_BIND_HOST", "10.0.0.7")
    monkeypatch.setenv("BROKER_BIND_HOST", "192.168.0.2")
    monkeypatch.setenv("BROKER_HTTP_BIND_HOST", "127.0.0.1")
    settings = load_settings(_env_file=None)
    hosts = (settings.dicom.bind_host, settings.hl7.bind_host, settings.http.bind_host)
    assert hosts == ("192.168.0.2", "10.0.0.7", "127.0.0.1")
    both = load_settings(_env_file=None, bind_host="::", dicom_bind_host="::1")
    assert (both.dicom.bind_host, both.hl7.bind_host, both.http.bind_host) == ("::1", "::", "::")


def test_every_listener_binds_to_all_addresses_by_default() -> None:
    settings = load_settings(_env_file=None)
    assert {s.bind_host for s in (settings.dicom, settings.hl7, settings.http)} == {"0.0.0.0"}


def test_bind_host_errors_name_the_listeners_variable() -> None:
    assert env_name("hl7", "bind_host") == "BROKER_HL7_BIND_HOST"


@pytest.mark.parametrize("value", ["off", "OFF", "", " off "])
def test_tls_ports_are_off_by_default_and_by_word(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(_env_file=None).dicom.tls_port is None
    monkeypatch.setenv("BROKER_DICOM_TLS_PORT", value)
    monkeypatch.setenv("BROKER_HL7_TLS_PORT", value)
    settings = load_settings(_env_file=None)
    assert settings.dicom.tls_port is None and settings.hl7.tls_port is None


def test_tls_port_zero_is_a_free_port_not_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_TLS_CERT", "/c.pem")
    monkeypatch.setenv("BROKER_TLS_KEY", "/k.pem")
    monkeypatch.setenv("BROKER_DICOM_TLS_PORT", "0")
    assert load_settings(_env_file=None).dicom.tls_port == 0


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            {"BROKER_DICOM_TLS_PORT": "2762"},
            "BROKER_DICOM_TLS_PORT needs BROKER_TLS_CERT and BROKER_TLS_KEY",
        ),
        (
            {"BROKER_DICOM_TLS_PORT": "2762", "BROKER_HL7_TLS_PORT": "2576"},
            "BROKER_DICOM_TLS_PORT and BROKER_HL7_TLS_PORT need BROKER_TLS_CERT",
        ),
        ({"BROKER_TLS_CERT": "/c.pem"}, "BROKER_TLS_CERT and BROKER_TLS_KEY go together"),
        (
            {"BROKER_TLS_CLIENT_CERT": "required"},
            "BROKER_TLS_CLIENT_CERT=required needs BROKER_TLS_CA",
        ),
        ({"BROKER_TLS_CLIENT_CERT": "maybe"}, "BROKER_TLS_CLIENT_CERT: Input should be"),
        ({"BROKER_HL7_TLS_PORT": "70000"}, "BROKER_HL7_TLS_PORT: Input should be"),
    ],
)
def test_tls_settings_that_cannot_work_stop_start_up_with_a_sentence(
    environment: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert message in str(info.value)


def test_flat_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_DICOM_PORT", "1104")
    monkeypatch.setenv("BROKER_AE_TITLE", "FROMENV")
    settings = load_settings(_env_file=None, dicom_port=0)
    assert (settings.dicom.port, settings.dicom.ae_title) == (0, "FROMENV")


def test_flat_overrides_win_when_mixed_with_a_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_DICOM_PORT", "3333")
    settings = load_settings(_env_file=None, dicom_port=7, dicom={"ae_title": "MIXED"})
    assert (settings.dicom.port, settings.dicom.ae_title) == (7, "MIXED")


def test_errors_name_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_MWL_MAX_RESULTS", "-1")
    monkeypatch.setenv("BROKER_AE_TITLE", "A\\B")
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert "BROKER_MWL_MAX_RESULTS:" in str(info.value)
    assert "BROKER_AE_TITLE:" in str(info.value)


def test_sections_are_frozen() -> None:
    settings = load_settings(_env_file=None)
    with pytest.raises(ValueError):
        settings.dicom.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("variable", ["BROKER_HL7_MISSING_ACCESSION", "BROKER_HL7_MISSING_START"])
def test_intake_policies_take_only_their_words(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "maybe")
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert f"{variable}:" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BROKER_HL7_DB_DOWN", "ar"),
        ("BROKER_HL7_ALLOWED_ADDRESSES", "10.0.0.0/8, ris.example"),
        ("BROKER_HL7_MAX_CONNECTIONS", "0"),
        ("BROKER_HL7_MAX_CONNECTIONS_PER_ADDRESS", "0"),
    ],
)
def test_hl7_front_door_settings_are_checked(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert f"{variable}:" in str(info.value)


def test_hl7_allow_lists_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_HL7_ALLOWED_SENDERS", " RIS , PACS^HOSP,,")
    monkeypatch.setenv("BROKER_HL7_ALLOWED_ADDRESSES", "10.1.0.0/16, 192.168.1.5, fd00::/8")
    hl7 = load_settings(_env_file=None).hl7
    assert hl7.sender_allow_list == {("RIS", None), ("PACS", "HOSP")}
    assert [str(n) for n in hl7.address_allow_list] == ["10.1.0.0/16", "192.168.1.5/32", "fd00::/8"]
    defaults = load_settings(_env_file=None, hl7_allowed_senders="", hl7_allowed_addresses="").hl7
    assert defaults.sender_allow_list == frozenset() and defaults.address_allow_list == ()
    assert defaults.idle_timeout == 60.0 and defaults.db_down == "close"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("PACS", "AE@host:port"),
        ("PACS@pacs:0", "host:port"),
        ("PACS@pacs:104=print", "services"),
        ("TOO_LONG_AE_TITLE_X@pacs:104", "16 characters"),
        ('[{"ae_title": "PACS", "host": "pacs"}]', "Field required"),
    ],
)
def test_remote_aes_are_checked(raw: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_REMOTE_AES", raw)
    with pytest.raises(SettingsError, match="BROKER_REMOTE_AES") as caught:
        load_settings(_env_file=None)
    assert message in str(caught.value)


def test_remote_aes_take_json_and_tls() -> None:
    settings = load_settings(
        _env_file=None,
        remote_aes='[{"ae_title": "RIS", "host": "ris", "port": 11112, "tls": true, '
        '"services": ["mpps"]}]',
    )
    (seed,) = settings.dicom.remote_aes
    assert (seed.ae_title, seed.tls, seed.services) == ("RIS", True, ("mpps",))
    (entry,) = load_settings(_env_file=None, remote_aes="CT@ct:104:TLS").dicom.remote_aes
    assert (entry.tls, entry.services) == (True, ("store", "commit"))


def test_calling_ae_services_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_ALLOWED_CALLING_AES", "CT1:echo+find+mpps, MR1, US1:Store")
    services = load_settings(_env_file=None).dicom.calling_ae_services
    assert services == {
        "CT1": frozenset({"echo", "find", "mpps"}),
        "MR1": None,
        "US1": frozenset({"store"}),
    }


@pytest.mark.parametrize("entry", ["CT1:teleport", "CT1:", "CT1:echo+", "A\\B:echo"])
def test_unknown_calling_ae_services_are_refused(
    entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_ALLOWED_CALLING_AES", entry)
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert "BROKER_ALLOWED_CALLING_AES" in str(info.value)
