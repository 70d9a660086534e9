"""Failed logins per account and per address, which no bearer token can sidestep.

The REST rate limit counts a caller by user once a valid token comes along, so on its own
it would let anyone holding some token try passwords in a bucket of their own. The login
route therefore keeps counts of its own: failed logins per account (the username,
case-folded) and per address, in a fixed window of `login_failure_window_s`, like
`gateway.rate_limit`. Over either limit, a login is answered RATE_001 before its password
is even looked at; a failure adds one to both counts, and a success clears the account's.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from gateway.lua_source import lua_source
from orchestra import keys
from orchestra.errors import RateLimited
from orchestra.settings import Settings


# One failure on one count, with the count's expiry, at once (a count left without an
# expiry would refuse its account for good). One key a call: the account's and the
# address's counts sit in different slots of a Redis Cluster.
class LoginLimiter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.max_per_account = settings.login_max_failures_per_account
        self.max_per_address = settings.login_max_failures_per_address
        self.window_s = settings.login_failure_window_s
        self._count_failure: AsyncScript = redis.register_script(lua_source("count_in_window"))

    async def check(self, username: str, address: str) -> None:
        """RATE_001 when the account or the address failed too often in this window."""
        account_key, address_key = self._keys(username, address)
        # Two GETs, not an MGET: the keys may sit in two slots of a Redis Cluster.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(account_key)
            pipe.get(address_key)
            account, by_address = await pipe.execute()
        if int(account or 0) >= self.max_per_account:
            raise self._refusal("this account", self.max_per_account)
        if int(by_address or 0) >= self.max_per_address:
            raise self._refusal("this address", self.max_per_address)

    async def failed(self, username: str, address: str) -> None:
        """Count a failed login against the account and the address."""
        ttl_s = int(self.window_s) + 1
        counts = self._keys(username, address)
        await asyncio.gather(*(self._count_failure(keys=[key], args=[ttl_s]) for key in counts))

    async def succeeded(self, username: str) -> None:
        """A successful login clears the account's count (not the address's)."""
        await self.redis.delete(self._keys(username, "")[0])

    def _keys(self, username: str, address: str) -> tuple[str, str]:
        window = int(time.time() // self.window_s)
        # Hashed: a username may hold any character, braces (hash tags) and colons included.
        account = hashlib.sha256(username.casefold().encode()).hexdigest()[:32]
        return (
            keys.login_failures(f"account:{account}", window),
            keys.login_failures(f"ip:{address or 'unknown'}", window),
        )

    def _refusal(self, who: str, limit: int) -> RateLimited:
        retry_s = self.window_s - (time.time() % self.window_s)
        return RateLimited(
            f"too many failed logins from {who}: {limit} in {self.window_s:g} s",
            {"retryAfterS": round(retry_s, 1)},
        )
