"""The service catalogue JSON that the NixOS module writes, and the demo's own catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from providers.demo.server import demo_catalogue
from providers.host.catalogue import CatalogueError, ServiceCatalogue, ServiceInfo

NEXTCLOUD = {
    "id": "nextcloud",
    "name": "Nextcloud",
    "description": "Files and calendars",
    "units": ["phpfpm-nextcloud.service", "nginx.service", "nextcloud-cron.timer"],
    "folders": ["/var/lib/nextcloud"],
    "databases": ["nextcloud"],
    "subdomains": ["cloud"],
    "movable": True,
    "backup": "nextcloud",
}
VAULTWARDEN = {"id": "vaultwarden", "units": ["vaultwarden.service"]}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _load_error(tmp_path: Path, data: object) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(CatalogueError) as caught:
        ServiceCatalogue.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_a_valid_catalogue_file_is_loaded_with_every_field(tmp_path: Path) -> None:
    catalogue = ServiceCatalogue.load(_write(tmp_path, {"services": [NEXTCLOUD, VAULTWARDEN]}))
    assert catalogue["nextcloud"] == ServiceInfo(
        id="nextcloud",
        name="Nextcloud",
        description="Files and calendars",
        units=("phpfpm-nextcloud.service", "nginx.service", "nextcloud-cron.timer"),
        folders=("/var/lib/nextcloud",),
        databases=("nextcloud",),
        subdomains=("cloud",),
        movable=True,
        backup="nextcloud",
    )


def test_optional_fields_have_defaults_and_the_name_defaults_to_the_id(tmp_path: Path) -> None:
    catalogue = ServiceCatalogue.load(_write(tmp_path, {"services": [VAULTWARDEN]}))
    assert catalogue["vaultwarden"] == ServiceInfo(
        id="vaultwarden", name="vaultwarden", description="", units=("vaultwarden.service",)
    )


def test_services_are_listed_by_id_and_all_units_in_that_order(tmp_path: Path) -> None:
    catalogue = ServiceCatalogue.load(_write(tmp_path, {"services": [VAULTWARDEN, NEXTCLOUD]}))
    assert list(catalogue) == ["nextcloud", "vaultwarden"]
    assert len(catalogue) == 2
    assert catalogue.all_units == (
        "phpfpm-nextcloud.service",
        "nginx.service",
        "nextcloud-cron.timer",
        "vaultwarden.service",
    )
    assert catalogue.get("nosuch") is None
    assert "nextcloud" in catalogue


def test_an_empty_catalogue_is_valid(tmp_path: Path) -> None:
    assert len(ServiceCatalogue.load(_write(tmp_path, {"services": []}))) == 0


@pytest.mark.parametrize("bad_id", ["Nextcloud", "next cloud", "../etc", "", "-x", 7, None])
def test_a_bad_service_id_is_refused_naming_the_file_and_entry(
    tmp_path: Path, bad_id: object
) -> None:
    message = _load_error(tmp_path, {"services": [VAULTWARDEN, {**NEXTCLOUD, "id": bad_id}]})
    assert "services[1]: id must match" in message


@pytest.mark.parametrize(
    "units",
    [
        ["nginx"],
        ["nginx.conf"],
        ["nginx service.service"],
        ["nginx.service; rm -rf /"],
        ["../../etc/passwd.service"],
        [],
        "nginx.service",
        [3],
    ],
)
def test_bad_unit_names_are_refused_naming_the_file(tmp_path: Path, units: object) -> None:
    message = _load_error(tmp_path, {"services": [{"id": "web", "units": units}]})
    assert "services[0]: " in message
    assert "units must" in message


def test_template_instances_and_other_unit_kinds_are_valid_names(tmp_path: Path) -> None:
    units = ["container@web.service", "backup.timer", "data.mount", "sshd.socket", "a.target"]
    catalogue = ServiceCatalogue.load(_write(tmp_path, {"services": [{"id": "x", "units": units}]}))
    assert catalogue["x"].units == tuple(units)


def test_a_service_named_twice_is_refused(tmp_path: Path) -> None:
    message = _load_error(tmp_path, {"services": [VAULTWARDEN, NEXTCLOUD, VAULTWARDEN]})
    assert "names a service twice" in message


def test_a_folder_list_that_is_not_strings_is_refused(tmp_path: Path) -> None:
    message = _load_error(tmp_path, {"services": [{**VAULTWARDEN, "folders": "/var/lib/x"}]})
    assert "services[0]: folders must be a list of strings" in message


@pytest.mark.parametrize("data", [[], {"service": []}, {"services": {}}, "services", None])
def test_a_file_without_a_services_list_is_refused(tmp_path: Path, data: object) -> None:
    assert 'expected {"services": [...]}' in _load_error(tmp_path, data)


def test_a_service_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    assert "services[0]: expected an object" in _load_error(tmp_path, {"services": ["nginx"]})


def test_a_file_that_is_not_json_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.json"
    path.write_text('{"services": [', encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid JSON") as caught:
        ServiceCatalogue.load(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(CatalogueError) as caught:
        ServiceCatalogue.load(path)
    assert str(caught.value) == f"{path}: No such file or directory"


def test_the_demo_catalogue_has_at_least_eight_services_some_with_several_units() -> None:
    catalogue = demo_catalogue()
    assert len(catalogue) >= 8
    assert {"nextcloud", "vaultwarden"} <= set(catalogue)
    assert sum(1 for sid in catalogue if len(catalogue[sid].units) > 1) >= 2
    assert all(catalogue[sid].units for sid in catalogue)


def test_the_demo_catalogue_survives_a_round_trip_through_json(tmp_path: Path) -> None:
    demo = demo_catalogue()
    data = {
        "services": [
            {
                "id": info.id,
                "name": info.name,
                "description": info.description,
                "units": list(info.units),
                "shared_units": list(info.shared_units),
                "folders": list(info.folders),
            }
            for info in demo.values()
        ]
    }
    loaded = ServiceCatalogue.load(_write(tmp_path, data))
    assert list(loaded) == list(demo)
    assert loaded.all_units == demo.all_units


def test_shared_units_are_read_apart_from_a_services_own(tmp_path: Path) -> None:
    data = {"services": [{"id": "nextcloud", "units": ["phpfpm-nextcloud.service"],
                          "shared_units": ["nginx.service", "postgresql.service"]},
                         {"id": "forgejo", "units": ["forgejo.service"],
                          "shared_units": ["nginx.service"]}]}  # fmt: skip
    catalogue = ServiceCatalogue.load(_write(tmp_path, data))
    assert catalogue["nextcloud"].units == ("phpfpm-nextcloud.service",)
    assert catalogue["nextcloud"].shared_units == ("nginx.service", "postgresql.service")
    # Shown once each, own and shared alike.
    assert catalogue.all_units == ("forgejo.service", "nginx.service",
                                   "phpfpm-nextcloud.service", "postgresql.service")  # fmt: skip


def test_a_unit_that_is_one_services_own_and_anothers_shared_is_refused(tmp_path: Path) -> None:
    data = {"services": [{"id": "web", "units": ["nginx.service"]},
                         {"id": "nextcloud", "units": ["phpfpm-nextcloud.service"],
                          "shared_units": ["nginx.service"]}]}  # fmt: skip
    assert "nginx.service is one service's own unit" in _load_error(tmp_path, data)
