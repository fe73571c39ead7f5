"""`app.rolloutTimeoutSeconds`: how long `pulumi up` waits for a colour's migration Job and Deployment
(the Kubernetes provider's `pulumi.com/timeoutSeconds`, and the migration Job's own
`activeDeadlineSeconds`, which the provider's Job await needs to be bounded), so an image that cannot be
pulled fails the update in that time rather than the provider's 10 minutes. Absent: no annotation (the
default stays) and the Job's deadline is 900 s. The real cluster case: tests/cluster/test_deploy.py."""

from __future__ import annotations

import pytest
from immune_infra.config import ConfigError
from immune_infra.immune_app import MIGRATION_DEADLINE_S
from immune_infra.render import RenderedStack

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
    # Kubernetes fails the Job past the bound: the provider's own Job await re-arms its timer on
    # every event, so the annotation alone does not bound a pod stuck in ImagePullBackOff.
    assert all(job["spec"]["activeDeadlineSeconds"] == 90 for job in jobs)


def test_without_a_timeout_the_providers_default_stays() -> None:
    rendered = render("staging")
    for manifest in rendered.manifests:
        assert ANNOTATION not in (manifest["metadata"].get("annotations") or {}), manifest["metadata"]["name"]
    jobs = [job for job in rendered.of_kind("Job") if "-migrate-" in job["metadata"]["name"]]
    assert jobs and all(job["spec"]["activeDeadlineSeconds"] == MIGRATION_DEADLINE_S for job in jobs)


def test_a_new_deadline_is_a_new_migration_job_not_an_edit_of_a_finished_one() -> None:
    """A finished Job's deadline edited in place did not always stay changed back after a failed `up`
    (tests/cluster/test_deploy.py): the deadline is part of the Job's name, like its image."""

    def names(rendered: RenderedStack) -> set[str]:
        return {
            job["metadata"]["name"]
            for job in rendered.of_kind("Job")
            if "-migrate-" in job["metadata"]["name"]
        }

    default, bounded = render("staging"), render("staging", {"app": {"rolloutTimeoutSeconds": 90}})
    assert names(default).isdisjoint(names(bounded))
    assert names(render("staging")) == names(default)  # and nothing else renames it


def test_a_timeout_below_30_seconds_is_refused() -> None:
    with pytest.raises(ConfigError, match="rolloutTimeoutSeconds"):
        render("staging", {"app": {"rolloutTimeoutSeconds": 5}})
