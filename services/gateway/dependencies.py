"""FastAPI dependencies: the gateway's parts, built in the lifespan, as a route parameter."""

from typing import Annotated

from fastapi import Depends, Request

from services.gateway.bootstrap import Gateway


def gateway_parts(request: Request) -> Gateway:
    return request.app.state.gateway


GatewayParts = Annotated[Gateway, Depends(gateway_parts)]
"""Declare a route parameter `gateway: GatewayParts` to use the gateway's parts."""
