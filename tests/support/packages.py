"""A job's result package read through the HTTP API, as any client reads it: the package view, the receipt
(with the miner-signed manifest) and each file. Nothing here knows the database schema or the blob layout,
so it reads the same from SQLite and PostgreSQL, in-process or over a socket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx


@dataclass(frozen=True)
class Package:
    """What the coordinator accepted from the miner for one job."""

    miner_id: str
    partial: bool
    manifest: dict[str, Any]
    miner_signature: str
    files: dict[str, bytes]


def _answer(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, f"{response.request.url.path}: {response.status_code} {response.text}"
    return response


def _package(results: dict[str, Any], receipt: dict[str, Any], files: dict[str, bytes]) -> Package:
    return Package(
        miner_id=results["miner_id"],
        partial=results["partial"],
        manifest=receipt["manifest"],
        miner_signature=receipt["receipt"]["miner_signature"],
        files=files,
    )


def _file_path(job_id: str, path: str) -> str:
    return f"/v1/jobs/{job_id}/files/{quote(path)}"


def read_package(http: httpx.Client, job_id: str, headers: dict[str, str] | None = None) -> Package:
    results = _answer(http.get(f"/v1/jobs/{job_id}/results", headers=headers)).json()
    receipt = _answer(http.get(f"/v1/jobs/{job_id}/receipt", headers=headers)).json()
    files = {
        f["path"]: _answer(http.get(_file_path(job_id, f["path"]), headers=headers)).content for f in results["files"]
    }
    return _package(results, receipt, files)


async def read_package_async(http: httpx.AsyncClient, job_id: str, headers: dict[str, str] | None = None) -> Package:
    results = _answer(await http.get(f"/v1/jobs/{job_id}/results", headers=headers)).json()
    receipt = _answer(await http.get(f"/v1/jobs/{job_id}/receipt", headers=headers)).json()
    files = {
        f["path"]: _answer(await http.get(_file_path(job_id, f["path"]), headers=headers)).content
        for f in results["files"]
    }
    return _package(results, receipt, files)
