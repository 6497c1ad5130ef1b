"""Share links: an unguessable, expiring, revocable URL that downloads a job's package with no API key.

Only a hash of each token is stored; the token is shown once, when the link is made. A link never outlives
the results it points at, and deleting or expiring the results revokes it.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock, isoformat_z
from aitbc.domain.errors import Gone, InvalidInput, NotFound
from aitbc.domain.identifiers import hash_secret, new_id
from aitbc.protocol.results import CreatedShareView, RevokedShares, ShareList, ShareState, ShareView
from aitbc.services.downloads import Download, DownloadService
from aitbc.services.jobs import JobService
from aitbc.services.packages import PackageService
from aitbc.settings import Settings
from aitbc.storage.interfaces import JobReadModel
from aitbc.storage.results import Share, ShareStore

TOKEN_PREFIX = "aitbcs_"  # noqa: S105 - a prefix that marks share tokens, not a secret
MIN_SHARE_SECONDS = 60


def new_share_token() -> str:
    """256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def share_state(share: Share, now: datetime) -> ShareState:
    if share.revoked_at is not None:
        return "revoked"
    return "expired" if share.expires_at <= now else "active"


def share_view(share: Share, now: datetime) -> ShareView:
    return ShareView(
        share_id=share.id,
        job_id=share.job_id,
        state=share_state(share, now),
        created_at=share.created_at,
        expires_at=share.expires_at,
        revoked_at=share.revoked_at,
        download_count=share.download_count,
        last_download_at=share.last_download_at,
    )


class ShareService:
    def __init__(
        self,
        shares: ShareStore,
        jobs: JobReadModel,
        packages: PackageService,
        downloads: DownloadService,
        job_service: JobService,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self._shares = shares
        self._jobs = jobs
        self._packages = packages
        self._downloads = downloads
        self._job_service = job_service
        self._clock = clock
        self._settings = settings

    async def create(
        self, principal: Principal, job_id: str, expires_in_seconds: int | None, base_url: str
    ) -> CreatedShareView:
        """A new link to the job's package, valid `expires_in_seconds` (default 7 days) but never past the
        moment its results expire."""
        package = await self._packages.package(principal, job_id)
        seconds = expires_in_seconds if expires_in_seconds is not None else self._settings.share_default_seconds
        if seconds < MIN_SHARE_SECONDS:
            raise InvalidInput(f"a share link must last at least {MIN_SHARE_SECONDS} seconds")
        now = self._clock.now()
        expires_at = now + timedelta(seconds=seconds)
        capped = package.expire_at is not None and package.expire_at < expires_at
        if capped and package.expire_at is not None:
            expires_at = package.expire_at
        token = new_share_token()
        share = Share(
            id=new_id("share"),
            job_id=package.job.id,
            account_id=package.job.account_id,
            token_hash=hash_secret(token),
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
            download_count=0,
            last_download_at=None,
        )
        await self._shares.add_share(share)
        return CreatedShareView(
            **share_view(share, now).model_dump(),
            token=token,
            url=f"{base_url.rstrip('/')}/v1/shared/{token}",
            capped=capped,
        )

    async def list(self, principal: Principal, job_id: str) -> ShareList:
        job = await self._job_service.get(principal, job_id)
        now = self._clock.now()
        return ShareList(job_id=job.id, shares=[share_view(s, now) for s in await self._shares.shares(job.id)])

    async def revoke(self, principal: Principal, job_id: str, share_id: str) -> ShareView:
        job = await self._job_service.get(principal, job_id)
        share = await self._shares.revoke_share(job.id, share_id, self._clock.now())
        if share is None:
            raise NotFound(f"job {job.id} has no share link {share_id}")
        return share_view(share, self._clock.now())

    async def revoke_all(self, principal: Principal, job_id: str) -> RevokedShares:
        job = await self._job_service.get(principal, job_id)
        return RevokedShares(job_id=job.id, revoked=await self._shares.revoke_shares(job.id, self._clock.now()))

    async def open(self, token: str) -> tuple[Share, Download]:
        """The share a token stands for and its package's zip: 404 if no such link was ever made, 410 if it
        was revoked, has expired, or its results are gone."""
        share = None
        if token.startswith(TOKEN_PREFIX) and len(token) <= 100:
            share = await self._shares.share_by_token_hash(hash_secret(token))
        if share is None:
            raise NotFound("no such share link")
        now = self._clock.now()
        if share.revoked_at is not None:
            raise Gone(f"this share link was revoked at {isoformat_z(share.revoked_at)}")
        if share.expires_at <= now:
            raise Gone(f"this share link expired at {isoformat_z(share.expires_at)}")
        job = await self._jobs.get_job(share.job_id)
        if job is None:
            raise Gone("the job this link shared no longer exists")
        return share, self._downloads.zip_of(await self._packages.package_of(job))

    async def count_download(self, share: Share) -> None:
        await self._shares.count_download(share.id, self._clock.now())
