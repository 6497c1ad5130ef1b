"""Job templates: a client's named settings for recurring jobs, private to its account."""

from __future__ import annotations

from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import InvalidInput, NotFound
from aitbc.domain.presets import MAX_TEMPLATES_PER_ACCOUNT, JobTemplate, Workflow
from aitbc.protocol.presets import CreateTemplateRequest, TemplateView
from aitbc.services.workflows import WorkflowService, check_params_size, preset_fields, preset_settings
from aitbc.storage.interfaces import TemplateStore

# How many of an account's templates an error that lists them names.
LISTED = 20


def template_view(template: JobTemplate) -> TemplateView:
    return TemplateView(
        name=template.name,
        workflow=template.workflow,
        created_at=template.created_at,
        updated_at=template.updated_at,
        **preset_fields(template.settings),
    )


def check_allowed_keys(workflow: Workflow, keys: set[str]) -> None:
    """The parameters a user sets (a template's and a request's) must be ones the workflow takes (422)."""
    refused = workflow.refused_keys(keys)
    if refused:
        takes = ", ".join(workflow.allowed_keys or ()) or "none"
        raise InvalidInput(
            f"workflow {workflow.ref} does not take the parameter{'s' if len(refused) > 1 else ''} "
            f"{', '.join(refused)}; the parameters it takes: {takes}"
        )


class TemplateService:
    def __init__(self, store: TemplateStore, workflows: WorkflowService, clock: Clock) -> None:
        self._store = store
        self._workflows = workflows
        self._clock = clock

    async def create(self, principal: Principal, request: CreateTemplateRequest) -> tuple[TemplateView, bool]:
        """Store a template (replacing one of the same name only if the request says so); and whether it is
        new. A workflow it names must exist and take its parameters."""
        settings = preset_settings(request)
        if settings.is_empty and request.workflow is None:
            raise InvalidInput(
                "a template holds at least one setting: type, model, params, requirements, priority, timeout or "
                "workflow"
            )
        check_params_size(settings.params)
        if request.workflow is not None:
            check_allowed_keys(await self._workflows.find(request.workflow), set(settings.params))
        now = self._clock.now()
        template = JobTemplate(
            account_id=principal.account.id,
            name=request.name,
            settings=settings,
            workflow=request.workflow,
            created_at=now,
            updated_at=now,
        )
        saved, created = await self._store.save_template(template, MAX_TEMPLATES_PER_ACCOUNT, request.replace)
        return template_view(saved), created

    async def list(self, principal: Principal) -> list[TemplateView]:
        return [template_view(template) for template in await self._store.list_templates(principal.account.id)]

    async def find(self, principal: Principal, name: str) -> JobTemplate:
        """The caller's template of this name; a 404 that lists the caller's templates when there is none
        (another account's template is not there to find)."""
        found = await self._store.get_template(principal.account.id, name)
        if found is not None:
            return found
        names = [template.name for template in await self._store.list_templates(principal.account.id)]
        if not names:
            raise NotFound(
                f"template {name!r} not found: you have no templates yet "
                "(create one with `aitbc client template create --name NAME …`)"
            )
        listed = ", ".join(names[:LISTED]) + (", …" if len(names) > LISTED else "")
        raise NotFound(f"template {name!r} not found; your templates: {listed}")

    async def get(self, principal: Principal, name: str) -> TemplateView:
        return template_view(await self.find(principal, name))

    async def delete(self, principal: Principal, name: str) -> TemplateView:
        deleted = await self._store.delete_template(principal.account.id, name)
        if deleted is None:
            raise NotFound(f"template {name!r} not found")
        return template_view(deleted)
