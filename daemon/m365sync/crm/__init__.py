"""The CRM side: one gateway contract (`gateway.CrmGateway`) and its adapters."""

from m365sync.crm.gateway import AccountSpec, CrmGateway

__all__ = ["AccountSpec", "CrmGateway"]
