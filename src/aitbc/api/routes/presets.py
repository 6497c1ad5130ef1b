"""Preset routes: a client's job templates (`/v1/templates`) and the workflows admins define (`/v1/workflows`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import AdminDep, ClientDep, CoordinatorDep
from aitbc.domain.presets import NAME_MAX_LENGTH, NAME_PATTERN
from aitbc.protocol.presets import CreateTemplateRequest, CreateWorkflowRequest, TemplateView, WorkflowView

router = APIRouter(route_class=CheckedRoute, prefix="/v1", tags=["presets"])

TemplateName = Annotated[
    str, Path(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN, description="the template's name")
]


@router.post(
    "/templates",
    status_code=201,
    response_model=TemplateView,
    responses={
        200: {"model": TemplateView, "description": "`replace` was true and a template of this name was replaced"},
        404: {"description": "The workflow the template names does not exist"},
        409: {"description": "A template of this name exists (and `replace` is false), or the account has 100"},
        413: {"description": "The template's params are over 64 KiB as JSON"},
    },
)
async def create_template(
    body: CreateTemplateRequest, principal: ClientDep, coordinator: CoordinatorDep, response: Response
) -> TemplateView:
    """Save job settings under a name, for `POST /v1/jobs` with `"template": NAME`: fields the submit sets
    win over the template's, and `params` merge key by key. Templates are private to the account."""
    view, created = await coordinator.templates.create(principal, body)
    if not created:
        response.status_code = 200
    return view


@router.get("/templates", response_model=list[TemplateView])
async def list_templates(principal: ClientDep, coordinator: CoordinatorDep) -> list[TemplateView]:
    return await coordinator.templates.list(principal)


@router.get("/templates/{name}", response_model=TemplateView)
async def get_template(name: TemplateName, principal: ClientDep, coordinator: CoordinatorDep) -> TemplateView:
    return await coordinator.templates.get(principal, name)


@router.delete("/templates/{name}", response_model=TemplateView)
async def delete_template(name: TemplateName, principal: ClientDep, coordinator: CoordinatorDep) -> TemplateView:
    """Delete the template (jobs already submitted with it keep their settings); answers what it held."""
    return await coordinator.templates.delete(principal, name)


@router.get("/workflows", response_model=list[WorkflowView])
async def list_workflows(_principal: ClientDep, coordinator: CoordinatorDep) -> list[WorkflowView]:
    """The workflow catalogue: every version of every workflow, by name, newest first."""
    return await coordinator.workflows.list()


@router.post(
    "/admin/workflows",
    status_code=201,
    response_model=WorkflowView,
    responses={
        409: {"description": "This version of the workflow exists already: versions never change"},
        413: {"description": "The workflow's params are over 64 KiB as JSON"},
    },
)
async def create_workflow(body: CreateWorkflowRequest, _admin: AdminDep, coordinator: CoordinatorDep) -> WorkflowView:
    """Define a workflow's next version (or the version named): its type, model, params and defaults, and the
    parameter keys a user may set at submit (`allowed_keys`; null: any). The newest version is the default."""
    return await coordinator.workflows.create(body)
