"""The gateway contract suite (`gateway_contract.GatewayContract`) and the adapters it runs on."""
