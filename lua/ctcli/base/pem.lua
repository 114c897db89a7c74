-- ed25519 keys as files: PEM around PKCS#8 (private) and SubjectPublicKeyInfo
-- (public), the forms `openssl genpkey -algorithm ed25519` and `ctcli keygen`
-- write. The engine signs and verifies with raw keys (ct.hash.ed25519_*);
-- this module owns the formats.
local ct = require("ct")

local M = {}

-- DER before the 32 key bytes (RFC 8410): PKCS#8 v1, PKCS#8 v2 (OneAsymmetricKey,
-- the public key may follow the seed), SPKI.
local PRIVATE_V1 = "\48\46\2\1\0\48\5\6\3\43\101\112\4\34\4\32"
local PRIVATE_V2 = "\48\83\2\1\1\48\5\6\3\43\101\112\4\34\4\32"
local PUBLIC = "\48\42\48\5\6\3\43\101\112\3\33\0"

-- Object identifiers of the keys people are likely to hand us instead,
-- so the message can name what the key is.
local OTHER = {
  { "\6\9\42\134\72\134\247\13\1\1\1", "RSA" },
  { "\6\7\42\134\72\206\61\2\1", "EC" },
  { "\6\3\43\101\113", "ED448" },
  { "\6\3\43\101\110", "X25519" },
}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_INDEX = {}
for i = 1, #B64 do B64_INDEX[B64:sub(i, i)] = i - 1 end

local function b64encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    out[#out + 1] = B64:sub((n >> 18) + 1, (n >> 18) + 1) .. B64:sub(((n >> 12) & 63) + 1, ((n >> 12) & 63) + 1) ..
      (b and B64:sub(((n >> 6) & 63) + 1, ((n >> 6) & 63) + 1) or "=") .. (c and B64:sub((n & 63) + 1, (n & 63) + 1) or "=")
  end
  return table.concat(out)
end

local function b64decode(s)
  s = s:gsub("%s", "")
  if #s % 4 ~= 0 or s:find("[^%w+/=]") or s:find("=[^=]") then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local n, pad = 0, 0
    for j = i, i + 3 do
      local ch = s:sub(j, j)
      if ch == "=" then pad = pad + 1 n = n << 6 else n = (n << 6) | B64_INDEX[ch] end
    end
    local bytes = string.char((n >> 16) & 255, (n >> 8) & 255, n & 255)
    out[#out + 1] = bytes:sub(1, 3 - pad)
  end
  return table.concat(out)
end

local function armor(label, der)
  local body = b64encode(der)
  local lines = {}
  for i = 1, #body, 64 do lines[#lines + 1] = body:sub(i, i + 63) end
  return string.format("-----BEGIN %s-----\n%s\n-----END %s-----\n", label, table.concat(lines, "\n"), label)
end

-- unarmor(pem, label) -> der | nil, msg
local function unarmor(pem, label)
  local body = pem:match("%-%-%-%-%-BEGIN " .. label .. "%-%-%-%-%-\r?\n(.-)%-%-%-%-%-END " .. label .. "%-%-%-%-%-")
  if not body then
    local other = pem:match("%-%-%-%-%-BEGIN ([%u ]+)%-%-%-%-%-")
    if other == label then return nil, "an incomplete PEM " .. label .. " block" end
    if other then return nil, "a PEM " .. other .. " block where a " .. label .. " was expected" end
    return nil, "no PEM " .. label .. " block"
  end
  local der = b64decode(body)
  if not der then return nil, "bad base64 in the PEM block" end
  return der
end

local function other_kind(der)
  for _, o in ipairs(OTHER) do
    if der:find(o[1], 1, true) then return "the key is " .. o[2] .. ", not ed25519" end
  end
  return "not an ed25519 key"
end

-- private_seed(pem) -> 32-byte seed | nil, msg
function M.private_seed(pem)
  local der, err = unarmor(pem, "PRIVATE KEY")
  if not der then return nil, err end
  if #der == 48 and der:sub(1, 16) == PRIVATE_V1 then return der:sub(17) end
  if #der == 85 and der:sub(1, 16) == PRIVATE_V2 then return der:sub(17, 48) end
  return nil, other_kind(der)
end

-- public_key(pem) -> 32 bytes | nil, msg
function M.public_key(pem)
  local der, err = unarmor(pem, "PUBLIC KEY")
  if not der then return nil, err end
  if #der == 44 and der:sub(1, 12) == PUBLIC then return der:sub(13) end
  return nil, other_kind(der)
end

-- keygen() -> private_pem, public_pem
function M.keygen()
  local seed, err = ct.hash.random(32)
  if not seed then return nil, err end
  return armor("PRIVATE KEY", PRIVATE_V1 .. seed), armor("PUBLIC KEY", PUBLIC .. ct.hash.ed25519_public(seed))
end

-- sign(private_pem, data) -> 64 bytes | nil, msg (the key is not usable)
function M.sign(pem, data)
  local seed, err = M.private_seed(pem)
  if not seed then return nil, err end
  return ct.hash.ed25519_sign(seed, data)
end

-- verify(public_pem, data, sig) -> boolean | nil, msg (the key is not usable)
function M.verify(pem, data, sig)
  local pub, err = M.public_key(pem)
  if not pub then return nil, err end
  return ct.hash.ed25519_verify(pub, data, sig)
end

return M
