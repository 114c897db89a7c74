-- Package signatures and the trust model (DESIGN §4): a detached ed25519
-- signature (manifest.sig) over the exact bytes of manifest.json, and the
-- sha256 of every other file in the package listed in manifest.json "files".
-- An operator trusts keys by putting .pub files in <root>/trusted-keys/;
-- when it holds any, a package must be signed by one of them and hold
-- exactly the files its manifest lists, each matching its digest.
local ct = require("ct")
local json = require("ctcli.base.json")
local pem_mod = require("ctcli.base.pem")

local M = {}

M.MANIFEST = "manifest.json"
M.SIGNATURE = "manifest.sig"

-- fingerprint(pub_pem) -> "sha256:<first 16 hex of the key's sha256>"
function M.fingerprint(pub_pem)
  return "sha256:" .. ct.hash.sha256(pub_pem):sub(1, 16)
end

-- parse_key(path, pem) -> key | nil, why: a key that parses as ed25519.
local function parse_key(path, pem)
  local good, kerr = pem_mod.public_key(pem)
  if not good then return nil, "not an ed25519 public key (" .. tostring(kerr) .. ")" end
  local name = path:match("([^/]+)$"):gsub("%.pub$", ""):gsub("%.key$", "")
  return { name = name, path = path, pem = pem, fingerprint = M.fingerprint(pem) }
end

-- read_key(path) -> {name=, path=, pem=, fingerprint=} | nil, msg
function M.read_key(path)
  local pem, err = ct.fs.read(path)
  if not pem then return nil, "cannot read the key " .. path .. ": " .. tostring(err) end
  local k, why = parse_key(path, pem)
  if not k then return nil, path .. ": " .. why end
  return k
end

-- trusted_keys(paths) -> array of keys in <root>/trusted-keys/*.pub (empty
-- when none) | nil, msg. One key that cannot be used (a dangling symlink, a
-- directory, bad PEM) fails them all: skipping it could leave no key, and
-- no key means no signature checking.
function M.trusted_keys(paths)
  local dir = paths.root .. "/trusted-keys"
  local names, derr = ct.fs.dir(dir)
  if not names then
    if not ct.fs.lstat(dir) then return {} end -- no such directory: nothing is trusted
    return nil, string.format("cannot read the trusted keys in %s (%s); fix it or remove it", dir, tostring(derr))
  end
  table.sort(names)
  local out = {}
  for _, f in ipairs(names) do
    if f:match("%.pub$") then
      local path = dir .. "/" .. f
      local pem, rerr = ct.fs.read(path)
      local k, why = nil, rerr and ("cannot be read: " .. (tostring(rerr):match(": ([^:]+)$") or tostring(rerr)))
      if pem then k, why = parse_key(path, pem) end
      if not k then
        return nil, string.format("the trusted key %s %s; every package is refused until it is fixed or removed",
          path, why:match("^cannot") and why or ("is " .. why))
      end
      out[#out + 1] = k
    end
  end
  return out
end

-- keys_for(key_paths, root_dir) -> keys, source | nil, msg: the keys given
-- with --key, else the trusted keys of root_dir when it is a root (source
-- says which; no keys at all is an empty list).
function M.keys_for(key_paths, root_dir)
  if key_paths and #key_paths > 0 then
    local keys = {}
    for _, path in ipairs(key_paths) do
      local k, err = M.read_key(path)
      if not k then return nil, err end
      keys[#keys + 1] = k
    end
    return keys, "--key"
  end
  local root = require("ctcli.base.root")
  if root_dir and root.is_root(root_dir) then
    local keys, err = M.trusted_keys(root.paths(root_dir))
    if not keys then return nil, err end
    if #keys > 0 then return keys, root_dir .. "/trusted-keys" end
  end
  return {}, nil
end

-- signer_label(key) -> "name (sha256:...)"
function M.label(key)
  return string.format("%s (%s)", key.name, key.fingerprint)
end

-- sign(key_path, manifest_text) -> raw signature bytes | nil, msg
function M.sign(key_path, manifest_text)
  local pem, err = ct.fs.read(key_path)
  if not pem then return nil, "cannot read the private key " .. key_path .. ": " .. tostring(err) end
  -- A public key in the private key's place is the likely slip; name it.
  if pem:find("-----BEGIN PUBLIC KEY-----", 1, true) then
    return nil, key_path .. ": a public key; signing needs the private key ('ctcli keygen' wrote it as " ..
      "<name>.key beside <name>.pub)"
  end
  local sig, serr = pem_mod.sign(pem, manifest_text)
  if not sig then return nil, key_path .. ": not an ed25519 private key (" .. tostring(serr) .. ")" end
  return sig
end

-- check_signature(manifest_text, sig, keys) -> key | nil, msg
function M.check_signature(manifest_text, sig, keys)
  if not sig then
    return nil, "not signed (no " .. M.SIGNATURE .. ")"
  end
  for _, k in ipairs(keys) do
    if pem_mod.verify(k.pem, manifest_text, sig) then return k end
  end
  local names = {}
  for _, k in ipairs(keys) do names[#names + 1] = M.label(k) end
  return nil, string.format("%s: the signature does not match %s, or %s was changed after signing",
    M.SIGNATURE, #names == 1 and ("the key " .. names[1]) or ("any of the keys " .. table.concat(names, ", ")),
    M.MANIFEST)
end

-- files_of(dir) -> sorted relative paths of everything but directories under dir
function M.files_of(dir)
  local out = {}
  local function walk(rel)
    local path = rel == "" and dir or (dir .. "/" .. rel)
    for _, name in ipairs(ct.fs.dir(path) or {}) do
      local r = rel == "" and name or (rel .. "/" .. name)
      local st = ct.fs.lstat(dir .. "/" .. r)
      if st and st.type == "dir" then walk(r)
      elseif st then out[#out + 1] = r end
    end
  end
  walk("")
  table.sort(out)
  return out
end

-- match(files, entries) -> true | nil, msg: entries ({rel=, kind=, sha256=},
-- everything a package holds but directories, the manifest and its
-- signature) are each listed in files with that digest, and every listed
-- file is among them.
local function match(files, entries)
  if type(files) ~= "table" then
    return nil, M.MANIFEST .. ": has no \"files\" digests; pack the package with 'ctcli pack'"
  end
  local seen = {}
  for _, e in ipairs(entries) do
    local want = files[e.rel]
    if not want then return nil, e.rel .. ": the package holds a file its manifest does not list" end
    if e.kind ~= "file" then return nil, e.rel .. ": not a regular file" end
    if "sha256:" .. tostring(e.sha256) ~= want then
      return nil, e.rel .. ": does not match its digest in " .. M.MANIFEST .. " (the file was changed after packing)"
    end
    seen[e.rel] = true
  end
  local missing = {}
  for rel in pairs(files) do
    if not seen[rel] then missing[#missing + 1] = rel end
  end
  table.sort(missing)
  if #missing > 0 then
    return nil, missing[1] .. ": listed in " .. M.MANIFEST .. " but missing from the package"
      .. (#missing > 1 and string.format(" (and %d more)", #missing - 1) or "")
  end
  return true
end

-- check_files(dir, files [, sha256]) -> true | nil, msg: every file under dir (but the
-- manifest and its signature) is listed and matches; every listed file exists.
function M.check_files(dir, files, sha256)
  sha256 = sha256 or ct.hash.sha256_file
  local entries = {}
  for _, rel in ipairs(M.files_of(dir)) do
    if rel ~= M.MANIFEST and rel ~= M.SIGNATURE then
      local st = ct.fs.lstat(dir .. "/" .. rel)
      local e = { rel = rel, kind = st.type }
      -- Only files that are listed are read: an unlisted one fails before.
      if st.type == "file" and type(files) == "table" and files[rel] then e.sha256 = sha256(dir .. "/" .. rel) end
      entries[#entries + 1] = e
    end
  end
  return match(files, entries)
end

-- check_archive(file, keys) -> key (or true without keys) | nil, msg: the
-- signature, then every file's digest, read from the archive as one stream
-- (nothing is extracted; memory stays flat in the package's size).
function M.check_archive(file, keys)
  -- list refuses two entries of one name (a reader that stops at the first
  -- manifest.json and an extraction that keeps the last would differ).
  local listed, lerr = ct.archive.list(file, {
    digests = true, read = { [M.MANIFEST] = 16 * 1024 * 1024, [M.SIGNATURE] = 4096 },
  })
  if not listed then
    -- The caller names the package already.
    if lerr:sub(1, #file + 2) == file .. ": " then lerr = lerr:sub(#file + 3) end
    return nil, lerr
  end
  local function clean(name) return (name:gsub("^%./", ""):gsub("/+$", "")) end
  local by = {}
  for _, e in ipairs(listed) do by[clean(e.name)] = e end
  local text = by[M.MANIFEST] and by[M.MANIFEST].data
  if not text then
    return nil, "no " .. M.MANIFEST .. ": a package in the original layout carries no digests or signature"
  end
  local key = true
  if keys and #keys > 0 then
    local err
    key, err = M.check_signature(text, by[M.SIGNATURE] and by[M.SIGNATURE].data, keys)
    if not key then return nil, err end
  end
  local doc = json.decode(text)
  local entries = {}
  for _, e in ipairs(listed) do
    local rel = clean(e.name)
    if rel ~= "" and rel ~= "." and rel ~= M.MANIFEST and rel ~= M.SIGNATURE and e.type ~= "dir" then
      -- A hard link holds no data: its content is its target's.
      local target = e.type == "hardlink" and by[clean(e.link or "")] or e
      local kind = (e.type == "file" or (e.type == "hardlink" and target)) and "file" or e.type
      entries[#entries + 1] = { rel = rel, kind = kind, sha256 = target and target.sha256 }
    end
  end
  local ok, merr = match(type(doc) == "table" and doc.files or nil, entries)
  if not ok then return nil, merr end
  return key
end

-- check_dir(dir, keys) -> key | nil, msg: the signature of an extracted
-- package against keys, then every file against the manifest's digests.
function M.check_dir(dir, keys, sha256)
  local text = ct.fs.read(dir .. "/" .. M.MANIFEST)
  if not text then
    return nil, "not signed (no " .. M.MANIFEST .. ": a package in the original layout cannot be signed; convert it with 'ctcli convert')"
  end
  local sig = ct.fs.read(dir .. "/" .. M.SIGNATURE)
  local key, err = M.check_signature(text, sig, keys)
  if not key then return nil, err end
  local doc = json.decode(text)
  if type(doc) ~= "table" then return nil, M.MANIFEST .. ": not valid JSON" end
  local ok, ferr = M.check_files(dir, doc.files, sha256)
  if not ok then return nil, ferr end
  return key
end

-- enforce(paths, dir, label) -> signer label | nil (no trusted keys) | nil, msg.
-- Called on a package extracted into tmp/, before anything else reads it.
function M.enforce(paths, dir, label, sha256)
  local keys, kerr = M.trusted_keys(paths)
  if not keys then return nil, label .. ": refused: " .. kerr end
  if #keys == 0 then return nil end
  local key, err = M.check_dir(dir, keys, sha256)
  if not key then
    return nil, string.format("%s: refused: %s (%s/trusted-keys holds %d trusted key%s)",
      label, err, paths.root, #keys, #keys == 1 and "" or "s")
  end
  return M.label(key)
end

return M
