"""The program's own image resource: a Pulumi dynamic provider over the Docker Engine API (docker-py).

Why it exists: pulumi-docker's `Image` needs the `pulumi-resource-docker` provider plugin, which the engine
normally downloads at run time; an air-gapped machine (this one) cannot download it and the Go module proxy
refuses its modules, so the plugin cannot be built either. The Python client of the Engine API (`docker`)
is an ordinary PyPI package, and Pulumi runs a dynamic provider's code in the project's own virtualenv, so
this resource needs nothing but a Docker daemon (and a registry to push to).

Lifecycle (each step is one call of the Engine API; https://docs.docker.com/reference/api/engine/):
- create: `POST /build` (the classic builder: `docker build` with DOCKER_BUILDKIT=0) of the context with the
  Dockerfile and build args, tagged `<repository>:<tag>`, then `POST /images/{name}/push`; the output
  `repoDigest` is `<repository>@sha256:...`, the manifest digest the registry answered for the push.
- diff: on the inputs only. `contextDigest` (`context_digest`) is computed by the program from every file the
  build would send (after `.dockerignore`), the Dockerfile and the build args, so an unchanged tree gives an
  unchanged resource and a second `pulumi up` neither builds nor pushes. A new repository or tag replaces the
  resource; anything else is an update (a new build and push, a new digest).
- delete: removes the local tag (`DELETE /images/{name}`: the image goes when no other tag holds it). The
  registry keeps the pushed manifest unless `registryDelete` is set: then the tag's manifest is deleted
  (`DELETE /v2/<name>/manifests/<digest>`, Docker Registry HTTP API V2) when the tag still points at this
  resource's digest; a registry that refuses deletes (distribution without `storage.delete.enabled`
  answers 405) keeps it and the delete still succeeds. Off by default: staging and prod may push the same
  bytes, hence the same digest, and deleting a manifest by digest removes it for every tag and stack.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import stat
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

DIGEST_PREFIX = "sha256:"
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
# Inputs whose change means another image name: a new resource (the old tag is deleted after).
REPLACE_KEYS = ("repository", "tag")
# Inputs whose change means a new build and push under the same name.
UPDATE_KEYS = (
    "contextDigest",
    "context",
    "dockerfile",
    "buildArgs",
    "platform",
    "dockerHost",
    "registryServer",
    "registryUsername",
    "registryDelete",
)


class EngineImageError(RuntimeError):
    """A build, push or delete failed; the message carries the daemon's or registry's own words."""


def _dockerignore_patterns(context: Path) -> list[str]:
    ignore = context / ".dockerignore"
    if not ignore.is_file():
        return []
    patterns = []
    for line in ignore.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line)
    return patterns


def context_files(context: Path, dockerfile: str) -> list[str]:
    """The files (relative POSIX paths, sorted) a build of `context` sends to the daemon: exactly docker-py's
    selection (`docker.utils.build.exclude_paths`, the `.dockerignore` rules of the Docker CLI, with the
    Dockerfile always included)."""
    from docker.utils.build import exclude_paths

    selected = exclude_paths(str(context), _dockerignore_patterns(context), dockerfile=dockerfile)
    return sorted(path.replace(os.sep, "/") for path in selected if not (context / path).is_dir())


def context_digest(
    context: Path, dockerfile: str, build_args: Mapping[str, str], platform: str | None
) -> str:
    """`sha256:<hex>` over what decides the built image: each sent file's path, executable bit and content
    (a symlink's target text), the build args and the platform. Timestamps and ownership are left out, so a
    fresh checkout of the same tree gives the same digest.

    Raises FileNotFoundError when the context or the Dockerfile is missing.
    """
    if not context.is_dir():
        raise FileNotFoundError(f"image build context {context} is not a directory")
    if not (context / dockerfile).is_file():
        raise FileNotFoundError(f"Dockerfile {context / dockerfile} not found")
    digest = hashlib.sha256()
    for relative in context_files(context, dockerfile):
        path = context / relative
        info = path.lstat()
        digest.update(relative.encode() + b"\0")
        if stat.S_ISLNK(info.st_mode):
            digest.update(b"link\0" + os.readlink(path).encode() + b"\0")
            continue
        digest.update(b"x\0" if info.st_mode & stat.S_IXUSR else b"-\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    for name in sorted(build_args):
        digest.update(f"arg {name}={build_args[name]}\0".encode())
    digest.update(f"platform {platform or ''}\0".encode())
    return DIGEST_PREFIX + digest.hexdigest()


def _client(docker_host: str | None) -> Any:
    import docker

    try:
        if docker_host:
            return docker.DockerClient(base_url=docker_host, version="auto", timeout=600)
        return docker.from_env(version="auto", timeout=600)
    except docker.errors.DockerException as exc:
        where = docker_host or os.environ.get("DOCKER_HOST") or "the default socket"
        raise EngineImageError(f"cannot reach the Docker daemon at {where}: {exc}") from exc


def _registry_host(repository: str) -> str:
    """The registry part of a repository name (`127.0.0.1:15000/immune-core` -> `127.0.0.1:15000`)."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _auth(props: Mapping[str, Any]) -> dict[str, str] | None:
    username = props.get("registryUsername")
    if not username:
        return None
    return {"username": str(username), "password": str(props.get("registryPassword") or "")}


def _push(client: Any, repository: str, tag: str, auth: dict[str, str] | None) -> str:
    """Push `<repository>:<tag>`; returns the manifest digest the registry answered."""
    digest: str | None = None
    for event in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
        if "error" in event:
            raise EngineImageError(f"push of {repository}:{tag} failed: {event['error']}")
        aux = event.get("aux")
        if isinstance(aux, dict) and str(aux.get("Digest", "")).startswith(DIGEST_PREFIX):
            digest = str(aux["Digest"])
    if digest is None:
        raise EngineImageError(f"push of {repository}:{tag} ended without a digest from the registry")
    return digest


def build_and_push(props: Mapping[str, Any]) -> dict[str, Any]:
    """Build the context and push it; returns the resource's outputs (the inputs plus `imageId`,
    `repoDigest`). Raises EngineImageError with the daemon's message (and the build log's tail)."""
    import docker

    repository = str(props["repository"])
    tag = str(props["tag"])
    name = f"{repository}:{tag}"
    client = _client(props.get("dockerHost"))
    try:
        try:
            image, _log = client.images.build(
                path=str(props["context"]),
                dockerfile=str(props["dockerfile"]),
                tag=name,
                buildargs=dict(props.get("buildArgs") or {}),
                platform=props.get("platform") or None,
                network_mode=props.get("network") or None,
                rm=True,
                forcerm=True,
                pull=False,
                labels={"dev.vertice.immune.context-digest": str(props["contextDigest"])},
            )
        except docker.errors.BuildError as exc:
            tail = [str(chunk.get("stream", chunk.get("error", ""))).rstrip() for chunk in exc.build_log]
            shown = "\n".join(line for line in tail if line)[-3000:]
            raise EngineImageError(f"build of {name} failed: {exc.msg}\n{shown}") from exc
        except docker.errors.APIError as exc:
            raise EngineImageError(f"build of {name} failed: {exc.explanation or exc}") from exc
        digest = _push(client, repository, tag, _auth(props))
    finally:
        client.close()
    return {**props, "imageId": image.id, "repoDigest": f"{repository}@{digest}"}


def _delete_from_registry(props: Mapping[str, Any]) -> str:
    """Delete the tag's manifest if it is still this resource's digest; returns what happened."""
    import httpx

    repository = str(props["repository"])
    digest = str(props.get("repoDigest", "")).rpartition("@")[2]
    host = _registry_host(repository)
    path = repository[len(host) + 1 :] if repository.startswith(host + "/") else repository
    scheme = "http" if _is_loopback(host) else "https"
    auth = _auth(props)
    credentials = (auth["username"], auth["password"]) if auth else None
    base = f"{scheme}://{host}/v2/{path}/manifests"
    with httpx.Client(timeout=30, auth=credentials) as http:
        head = http.head(f"{base}/{props['tag']}", headers={"Accept": MANIFEST_TYPES})
        if head.status_code == 404:
            return "absent"
        current = head.headers.get("Docker-Content-Digest")
        if head.status_code != 200 or current != digest:
            return f"kept: the tag now names {current or 'an unknown digest'} (HTTP {head.status_code})"
        answer = http.delete(f"{base}/{digest}")
    if answer.status_code in (200, 202):
        return "deleted"
    if answer.status_code == 405:
        return "kept: the registry does not allow deletes"
    raise EngineImageError(f"registry delete of {repository}@{digest} failed: HTTP {answer.status_code}")


def delete_image(props: Mapping[str, Any]) -> str:
    """Remove the local tag (and, with `registryDelete`, the registry manifest); returns a summary."""
    import docker

    name = f"{props['repository']}:{props['tag']}"
    client = _client(props.get("dockerHost"))
    try:
        try:
            client.images.remove(image=name, force=False, noprune=False)
            local = "local tag removed"
        except docker.errors.ImageNotFound:
            local = "local tag already gone"
        except docker.errors.APIError as exc:
            raise EngineImageError(f"cannot remove local image {name}: {exc.explanation or exc}") from exc
    finally:
        client.close()
    registry = _delete_from_registry(props) if props.get("registryDelete") else "registry left as is"
    summary = f"{name}: {local}; {registry}"
    print(summary, file=sys.stderr)  # the engine shows a dynamic provider's stderr in its log
    return summary


class EngineImageProvider(ResourceProvider):
    """The dynamic provider: stateless, every call opens its own Engine API connection."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = build_and_push(props)
        return CreateResult(id_=f"{props['repository']}:{props['tag']}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return diff_inputs(olds, news)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=build_and_push(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        delete_image(props)


def _differing(olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    return [key for key in keys if olds.get(key) != news.get(key)]


def diff_inputs(olds: Mapping[str, Any], news: Mapping[str, Any]) -> DiffResult:
    """Replace on a new name, update on new content or build settings, nothing otherwise.
    (The registry password is not compared: rotating it is no reason to rebuild.)"""
    replaces = _differing(olds, news, REPLACE_KEYS)
    changes = replaces + _differing(olds, news, UPDATE_KEYS)
    return DiffResult(changes=bool(changes), replaces=replaces, stables=[], delete_before_replace=False)


class EngineImage(pulumi.dynamic.Resource):
    """`<repository>:<tag>` built from `context` + `dockerfile` with `build_args` and pushed (module doc)."""

    @property
    def repo_digest(self) -> pulumi.Output[str]:
        """`<repository>@sha256:...`, what the registry answered for the push."""
        value: pulumi.Output[str] = getattr(self, "repoDigest")  # noqa: B009 - set by the SDK from props
        return value

    def __init__(
        self,
        name: str,
        *,
        repository: str,
        tag: str,
        context: Path,
        dockerfile: str,
        build_args: Mapping[str, str],
        platform: str | None,
        docker_host: str | None,
        registry_server: str | None,
        registry_username: str | None,
        registry_password: pulumi.Input[str] | None,
        registry_delete: bool,
        network: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "repository": repository,
            "tag": tag,
            "context": str(context),
            "dockerfile": dockerfile,
            "buildArgs": dict(build_args),
            "platform": platform,
            "dockerHost": docker_host,
            "registryServer": registry_server,
            "registryUsername": registry_username,
            "registryPassword": registry_password,
            "registryDelete": registry_delete,
            # Not compared by diff: where RUN steps may connect does not change what the image is.
            "network": network,
            "contextDigest": context_digest(context, dockerfile, build_args, platform),
            "imageId": None,
            "repoDigest": None,
        }
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=["registryPassword"])
        super().__init__(
            EngineImageProvider(),
            name,
            props,
            pulumi.ResourceOptions.merge(opts, secret_opts),
        )
