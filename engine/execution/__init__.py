"""Provides order execution: the Broker protocol, retrying exchange calls, and the ccxt Binance broker.

Submodules are imported directly (``engine.execution.broker``, ``.retry``, ``.ccxt_broker``) so that
the paper path never loads ccxt.
"""
