/**
 * The Redis store's Lua scripts (issue 6: atomic where counts must not race).
 * Each is one round trip and runs alone on the server, so 50 sessions of one
 * group opening at once get concurrency counts 1..50, each once. They follow
 * the memory store's rules step by step (rate-limiter.ts, harvest-window.ts,
 * greylist-memory.ts, reputation-memory.ts); the shared contract test holds
 * both stores to the same answers. Every key written gets a TTL here.
 *
 * Times and bucket numbers are computed by the caller and passed in, so the
 * scripts never read the server's clock and a fleet shares the callers' one
 * time base. Results are integers or strings only: Redis truncates a Lua
 * number in a reply to an integer, so decayed counts travel as strings.
 */
import type { Redis } from 'ioredis';

/**
 * KEYS: the address's allowlist entry, the group's rate hash, the group's
 * reputation hash, the group's open-sessions sorted set, the network's
 * allowlist entry (read only when ARGV[8] is 1).
 * ARGV: count (1 | 0), current bucket, buckets per window, window TTL ms,
 * busy TTL ms, the session's token, now ms, look up the network (1 | 0).
 * The rate hash holds one field per bucket (sessions opened in it). Open
 * sessions are a sorted set of session tokens scored by when each stops
 * counting (now + busy TTL): a token never released (a call that timed out
 * but ran, a release lost in an outage, a crashed process) drops out on its
 * own, however busy the group stays. A session longer than the busy TTL
 * stops counting too: the count errs towards too few, never too many.
 * Returns {address entry, concurrent, perMinute, bad, good, at, network entry}
 * (entries and the last three '' when unknown).
 */
const CONNECT = `
local allowed = redis.call('GET', KEYS[1]) or ''
local network = ''
if ARGV[8] == '1' then network = redis.call('GET', KEYS[5]) or '' end
local counting = ARGV[1] == '1'
local bucket = tonumber(ARGV[2])
local oldest = bucket - tonumber(ARGV[3])
local now = tonumber(ARGV[7])
local concurrent = 0
if counting then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), ARGV[6])
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
  concurrent = redis.call('ZCARD', KEYS[4])
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
else
  concurrent = redis.call('ZCOUNT', KEYS[4], '(' .. ARGV[7], '+inf')
end
local perMinute = 0
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  local b = tonumber(fields[i])
  if b ~= nil and b > oldest then
    perMinute = perMinute + tonumber(fields[i + 1])
  elseif counting then
    redis.call('HDEL', KEYS[2], fields[i])
  end
end
if counting then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
local rep = redis.call('HMGET', KEYS[3], 'bad', 'good', 'at')
return {allowed, concurrent, perMinute, rep[1] or '', rep[2] or '', rep[3] or '', network}
`;

/**
 * A survivor is remembered (memory-store.ts `allowlist`'s rules). KEYS: the
 * address's entry, the network's entry, the reputation hash of the client's
 * group. ARGV: the address entry's value, address TTL ms, network TTL ms,
 * remember the network (1 | 0), now ms, half-life ms, the value's flag word
 * when it names a deferred message ('' otherwise), the network entry's value,
 * restart only (1 | 0). An entry already there keeps its time, unless the
 * address's names the same message (its second word equals the flag): then it
 * is rewritten. With restart only, nothing is added, and a restart deletes
 * the network's entry. The network
 * is left out when its bad sessions, decayed to now, are at least one and
 * outnumber its delivered ones (FINISH's decay); an entry of its own is kept
 * (SET NX). Returns {address outcome, network outcome or ''}.
 */
const ALLOWLIST = `
local address = 'added'
local old = redis.call('GET', KEYS[1])
if old then
  if ARGV[7] ~= '' and string.match(old, '^%d+ (%S+)') == ARGV[7] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    address = 'restarted'
  else
    address = 'kept'
  end
elseif ARGV[9] == '1' then
  address = 'kept'
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if ARGV[4] ~= '1' then return {address, ''} end
if ARGV[9] == '1' then
  if address == 'restarted' and redis.call('DEL', KEYS[2]) == 1 then return {address, 'dropped'} end
  return {address, ''}
end
local rep = redis.call('HMGET', KEYS[3], 'bad', 'good', 'at')
local bad = tonumber(rep[1]) or 0
local good = tonumber(rep[2]) or 0
local age = tonumber(ARGV[5]) - (tonumber(rep[3]) or tonumber(ARGV[5]))
if age > 0 then
  local factor = math.pow(2, -age / tonumber(ARGV[6]))
  bad = bad * factor
  good = good * factor
end
if bad >= 1 and bad > good then return {address, 'bad-reputation'} end
local network = 'kept'
if redis.call('SET', KEYS[2], ARGV[8], 'PX', ARGV[3], 'NX') then network = 'added' end
return {address, network}
`;

/** Releases one session's concurrency: KEYS: the open-sessions set; ARGV: the session's token. */
const RELEASE = `
return redis.call('ZREM', KEYS[1], ARGV[1])
`;

/**
 * A session's end in one write. KEYS: the reputation hash, the open-sessions
 * set (or the same reputation key when no slot is released). ARGV: outcome
 * (bad | delivered | neutral), now ms, half-life ms, keep ms, release (1 | 0),
 * the session's token. Decays the stored counts to now, adds one, stores
 * `{bad, good, at}` (reputation-memory.ts).
 */
const FINISH = `
if ARGV[5] == '1' then redis.call('ZREM', KEYS[2], ARGV[6]) end
local outcome = ARGV[1]
if outcome ~= 'bad' and outcome ~= 'delivered' then return 0 end
local now = tonumber(ARGV[2])
local rep = redis.call('HMGET', KEYS[1], 'bad', 'good', 'at')
local bad = tonumber(rep[1]) or 0
local good = tonumber(rep[2]) or 0
local at = tonumber(rep[3]) or now
local age = now - at
if age > 0 then
  local factor = math.pow(2, -age / tonumber(ARGV[3]))
  bad = bad * factor
  good = good * factor
end
if outcome == 'bad' then bad = bad + 1 else good = good + 1 end
redis.call('HSET', KEYS[1], 'bad', string.format('%.17g', bad), 'good', string.format('%.17g', good), 'at', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`;

/**
 * One rejected recipient. KEYS: the group's harvest hash (its key names the
 * window, so a new window starts from nothing, as HarvestWindow.setWindow
 * does). ARGV: current bucket, buckets per window, window ms. Returns the
 * count within the window, this one included.
 */
const HARVEST = `
local bucket = tonumber(ARGV[1])
local oldest = bucket - tonumber(ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local b = tonumber(fields[i])
  if b ~= nil and b > oldest then
    total = total + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return total
`;

/**
 * Greylisting (greylist-memory.ts's rules). KEYS: the network's passed entry,
 * the triplet's pending entry. ARGV: now ms, min delay ms, pending expiry ms,
 * passed expiry ms, pending keep ms. Returns the outcome's name.
 */
const GREYLIST = `
local now = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 'allowlisted'
end
local first = redis.call('GET', KEYS[2])
if not first then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[5])
  return 'new'
end
local age = now - tonumber(first)
if age < tonumber(ARGV[2]) then return 'early' end
if age >= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[5])
  return 'expired'
end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
return 'passed'
`;

/** The scripts as commands on a client (ioredis defineCommand: EVALSHA, and EVAL after a restart emptied the script cache). */
export interface StoreScripts {
  tarpitConnect(
    allowKey: string,
    rateKey: string,
    reputationKey: string,
    openKey: string,
    networkKey: string,
    count: '1' | '0',
    bucket: number,
    buckets: number,
    windowTtlMs: number,
    busyTtlMs: number,
    token: string,
    now: number,
    lookNetwork: '1' | '0',
  ): Promise<[string, number, number, string, string, string, string]>;
  tarpitAllowlist(
    allowKey: string,
    networkKey: string,
    reputationKey: string,
    value: string,
    ttlMs: number,
    networkTtlMs: number,
    withNetwork: '1' | '0',
    now: number,
    halfLifeMs: number,
    messageFlag: string,
    networkValue: string,
    restartOnly: '1' | '0',
  ): Promise<[string, string]>;
  tarpitRelease(openKey: string, token: string): Promise<number>;
  tarpitFinish(reputationKey: string, openKey: string, outcome: string, now: number, halfLifeMs: number, keepMs: number, release: '1' | '0', token: string): Promise<number>;
  tarpitHarvest(harvestKey: string, bucket: number, buckets: number, windowMs: number): Promise<number>;
  tarpitGreylist(
    passedKey: string,
    tripletKey: string,
    now: number,
    minDelayMs: number,
    pendingMs: number,
    passedMs: number,
    keepMs: number,
  ): Promise<string>;
}

/** Defines the scripts on `client` and returns it typed with them. */
export function defineScripts(client: Redis): StoreScripts {
  client.defineCommand('tarpitConnect', { numberOfKeys: 5, lua: CONNECT });
  client.defineCommand('tarpitAllowlist', { numberOfKeys: 3, lua: ALLOWLIST });
  client.defineCommand('tarpitRelease', { numberOfKeys: 1, lua: RELEASE });
  client.defineCommand('tarpitFinish', { numberOfKeys: 2, lua: FINISH });
  client.defineCommand('tarpitHarvest', { numberOfKeys: 1, lua: HARVEST });
  client.defineCommand('tarpitGreylist', { numberOfKeys: 2, lua: GREYLIST });
  return client as unknown as StoreScripts;
}
