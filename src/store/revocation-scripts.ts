import type { Result } from 'ioredis';
import type { RedisClient } from './redis-connection.js';
import { revocationKey } from './revocation-index.js';
import { StoreUnavailableError, type RevocationRecord } from './store.js';

/**
 * The Lua side of the revocations hash, so a write is a compare-and-set in Redis itself: two
 * writers (or a writer and a resync) cannot interleave a read and a write, and no write can
 * shorten what is there.
 */
declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** Merges the record into its field; resolves to the text written (and published), or null if nothing changed. */
    mergeRevocation(hash: string, field: string, record: string, channel: string): Result<string | null, Context>;
    /** Deletes each field whose text is still the one given (field, text, field, text, …). */
    deleteRevocationsUnchanged(hash: string, ...fieldsAndTexts: string[]): Result<number, Context>;
  }
}

/**
 * mergeRevocation (revocation-index.ts) in Lua, on the field's record as Redis holds it: a
 * record that is not the field's own (missing, not JSON, wrong types, NaN or infinite numbers,
 * another kind or value) counts as absent, so a hostile write is overwritten, never trusted.
 * The result is written only if its text differs, then published on the channel. Numbers are
 * written in the shortest form that reads back as the same double, as JSON.stringify does.
 */
const MERGE_REVOCATION_LUA = `
local field, incomingText, channel = ARGV[1], ARGV[2], ARGV[3]
local function finite(n)
  return type(n) == 'number' and n == n and n ~= math.huge and n ~= -math.huge
end
local function parse(text)
  if type(text) ~= 'string' then return nil end
  local ok, v = pcall(cjson.decode, text)
  if not ok or type(v) ~= 'table' or type(v.revocation) ~= 'table' or not finite(v.expiresAtMs) then return nil end
  local r = v.revocation
  local id, before
  if r.kind == 'jti' then id = r.fingerprint
  elseif r.kind == 'cert' then id = r.thumbprint
  elseif r.kind == 'key' then
    if type(r.issuer) ~= 'string' or type(r.kid) ~= 'string' then return nil end
    id = r.issuer .. '\\n' .. r.kid
  elseif r.kind == 'subject' or r.kind == 'client' then
    if not finite(r.before) then return nil end
    id, before = r.value, r.before
  end
  if type(id) ~= 'string' or r.kind .. ':' .. id ~= field then return nil end
  local reason = nil
  if type(v.reason) == 'string' then reason = v.reason end
  return { kind = r.kind, id = id, issuer = r.issuer, kid = r.kid, before = before, expiresAtMs = v.expiresAtMs, reason = reason }
end
local function number(n)
  for digits = 15, 16 do
    local text = string.format('%.' .. digits .. 'g', n)
    if tonumber(text) == n then return text end
  end
  return string.format('%.17g', n)
end
local function encode(m)
  local idName = 'value'
  if m.kind == 'jti' then idName = 'fingerprint' elseif m.kind == 'cert' then idName = 'thumbprint' end
  local text = '{"revocation":{"kind":' .. cjson.encode(m.kind)
  if m.kind == 'key' then text = text .. ',"issuer":' .. cjson.encode(m.issuer) .. ',"kid":' .. cjson.encode(m.kid)
  else text = text .. ',"' .. idName .. '":' .. cjson.encode(m.id) end
  if m.before then text = text .. ',"before":' .. number(m.before) end
  text = text .. '},"expiresAtMs":' .. number(m.expiresAtMs)
  if m.reason then text = text .. ',"reason":' .. cjson.encode(m.reason) end
  return text .. '}'
end

local incoming = parse(incomingText)
if not incoming then return redis.error_reply('ERR the record is not a revocation of its field') end
local heldText = redis.call('HGET', KEYS[1], field)
local held = parse(heldText)
local text = incomingText
if held then
  local merged = { kind = held.kind, id = held.id, issuer = held.issuer, kid = held.kid, reason = held.reason,
    expiresAtMs = math.max(held.expiresAtMs, incoming.expiresAtMs) }
  if held.before then merged.before = math.max(held.before, incoming.before) end
  if merged.expiresAtMs ~= held.expiresAtMs or merged.before ~= held.before then
    merged.reason = incoming.reason or held.reason
  end
  if merged.expiresAtMs ~= incoming.expiresAtMs or merged.before ~= incoming.before or merged.reason ~= incoming.reason then
    text = encode(merged)
  end
end
if text == heldText then return false end
redis.call('HSET', KEYS[1], field, text)
redis.call('PUBLISH', channel, text)
return text
`;

/** Expired records go, unless a writer has replaced them since they were read. */
const DELETE_REVOCATIONS_UNCHANGED_LUA = `
local deleted = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    deleted = deleted + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return deleted
`;

/** Registers both scripts on a client (sent once, then run by SHA). */
export function defineRevocationScripts(client: RedisClient): void {
  client.defineCommand('mergeRevocation', { numberOfKeys: 1, lua: MERGE_REVOCATION_LUA });
  client.defineCommand('deleteRevocationsUnchanged', { numberOfKeys: 1, lua: DELETE_REVOCATIONS_UNCHANGED_LUA });
}

/** The revocations' hash, its version key and the channel that carries each new record, under the key prefix. */
export interface RevocationKeys { hash: string; version: string; channel: string }

export function revocationKeys(prefix: string): RevocationKeys {
  return { hash: `${prefix}revocations`, version: `${prefix}revocations:version`, channel: `${prefix}revocations` };
}

/** Records merged per pipeline. */
const MERGE_BATCH = 1000;

/**
 * Merges each record into the hash (published by the script when it grew) and bumps the version
 * if any grew: the whole of a revocation write, so a writer needs only these commands and keys
 * (the injector's Redis user, k8s/base/redis-users.acl). Resolves to how many grew.
 */
export async function mergeRevocations(client: RedisClient, keys: RevocationKeys, records: readonly RevocationRecord[]): Promise<number> {
  let grown = 0;
  for (let i = 0; i < records.length; i += MERGE_BATCH) {
    const batch = client.pipeline();
    for (const record of records.slice(i, i + MERGE_BATCH)) {
      batch.mergeRevocation(keys.hash, revocationKey(record.revocation), JSON.stringify(record), keys.channel);
    }
    for (const [err, written] of (await batch.exec()) ?? []) {
      if (err) throw err;
      if (written !== null) grown++;
    }
  }
  if (grown > 0) await client.incr(keys.version);
  return grown;
}

/** One revocation written, for every writer alike: a Redis that did not take it is StoreUnavailableError. */
export async function writeRevocation(client: RedisClient, keys: RevocationKeys, record: RevocationRecord): Promise<void> {
  try {
    await mergeRevocations(client, keys, [record]);
  } catch {
    throw new StoreUnavailableError('redis did not record the revocation');
  }
}
