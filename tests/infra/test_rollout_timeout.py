"""`app.rolloutTimeoutSeconds`: how long `pulumi up` waits for a colour's migration Job and Deployment
(the Kubernetes provider's `pulumi.com/timeoutSeconds`), so an image that cannot be pulled fails the
update in that time rather than the provider's 10 minutes. Absent: no annotation (the default stays)."""

from __future__ import annotations

import pytest
from immune_infra.config import ConfigError

from tests.infra.support import render

ANNOTATION = "pulumi.com/timeoutSeconds"


def test_the_timeout_annotates_each_colours_job_and_deployment() -> None:
    rendered = render("staging", {"app": {"rolloutTimeoutSeconds": 90}})
    for color in ("blue", "green"):
        assert (
            rendered.find("Deployment", f"immune-core-{color}")["metadata"]["annotations"][ANNOTATION] == "90"
        )
    jobs = [job for job in rendered.of_kind("Job") if "-migrate-" in job["metadata"]["name"]]
    assert len(jobs) == 2
    assert all(job["metadata"]["annotations"][ANNOTATION] == "90" for job in jobs)


def test_without_a_timeout_the_providers_default_stays() -> None:
    rendered = render("staging")
    for manifest in rendered.manifests:
        assert ANNOTATION not in (manifest["metadata"].get("annotations") or {}), manifest["metadata"]["name"]


def test_a_timeout_below_30_seconds_is_refused() -> None:
    with pytest.raises(ConfigError, match="rolloutTimeoutSeconds"):
        render("staging", {"app": {"rolloutTimeoutSeconds": 5}})
