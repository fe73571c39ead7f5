"""The render-diff helper the target tests rely on: it must see every kind of change (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.manifests import Change, diff, load_rendered, summary

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns, labels: {app: web}}
spec:
  selector: {app: web, color: blue}
  ports: [{port: 80, targetPort: http}]
"""


def write(root: Path, name: str, text: str) -> None:
    path = root / "1-manifest" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_identical_renders_have_no_changes(tmp_path: Path) -> None:
    write(tmp_path, "v1-service-ns-web.yaml", SERVICE)
    assert diff(load_rendered(tmp_path), load_rendered(tmp_path)) == []


def test_a_changed_field_is_reported_with_its_path(tmp_path: Path) -> None:
    write(tmp_path / "a", "svc.yaml", SERVICE)
    write(tmp_path / "b", "svc.yaml", SERVICE.replace("color: blue", "color: green"))
    changes = diff(load_rendered(tmp_path / "a"), load_rendered(tmp_path / "b"))
    assert changes == [Change("Service/ns/web", "spec.selector.color", "blue", "green")]


def test_added_removed_objects_and_list_items(tmp_path: Path) -> None:
    write(tmp_path / "a", "svc.yaml", SERVICE)
    write(tmp_path / "b", "svc.yaml", SERVICE.replace("port: 80", "port: 8080"))
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: ns}\n"
    write(tmp_path / "b", "cm.yaml", config_map)
    changes = diff(load_rendered(tmp_path / "a"), load_rendered(tmp_path / "b"))
    assert summary(changes) == {("ConfigMap/ns/extra", ""), ("Service/ns/web", "spec.ports[0].port")}
    removed = diff(load_rendered(tmp_path / "b"), load_rendered(tmp_path / "a"))
    assert Change("ConfigMap/ns/extra", "", "removed", None) in removed


def test_an_object_rendered_twice_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "one.yaml", SERVICE)
    write(tmp_path, "two.yaml", SERVICE)
    with pytest.raises(ValueError, match="rendered twice"):
        load_rendered(tmp_path)
