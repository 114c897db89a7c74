-- The release engineer's side of packages: extracting one outside any root
-- (validate, verify, inspect, plan), and writing one reproducibly (pack,
-- sign, convert): manifest.json (and manifest.sig) first, then the paths
-- the manifest names, sorted, owner 0:0, one fixed mtime.
local ct = require("ct")
local clock = require("ctcli.base.clock")
local json = require("ctcli.base.json")
local package = require("ctcli.model.package")
local report = require("ctcli.base.report")
local signing = require("ctcli.model.signing")

local M = {}

function M.tmpbase()
  local t = os.getenv("TMPDIR")
  if not t or t == "" then t = "/tmp" end
  return t
end

-- extract(file) -> dir, cleanup | nil, msg: into a new temp dir under $TMPDIR.
function M.extract(file)
  local st = ct.fs.stat(file)
  if not st then return nil, file .. ": no such package" end
  if st.type ~= "file" then return nil, file .. ": not a file" end
  local dir, err = ct.fs.mkdtemp(M.tmpbase() .. "/ctcli-pkg-XXXXXX")
  if not dir then return nil, "cannot create a temporary directory: " .. tostring(err) end
  local function cleanup() ct.fs.rmtree(dir) end
  local ok, xerr = ct.archive.extract(file, dir, {
    max_entries = package.MAX_ENTRIES, max_bytes = package.MAX_BYTES, check_space = true, special = "refuse",
  })
  if not ok then cleanup() return nil, xerr end
  return dir, cleanup
end

-- compression(file) -> "gzip", "zstd", "xz", "bzip2", "tar" or "unknown", by
-- the magic bytes at its start | nil, msg
local MAGIC = { { "\31\139", "gzip" }, { "\40\181\47\253", "zstd" }, { "\253" .. "7zXZ\0", "xz" } }
-- head(file, n) -> up to n first bytes of file | nil, msg (ct.fs.read
-- reads whole files only).
local function head_of(file, n)
  local real, err = ct.fs.realpath(file)
  if not real then return nil, err end
  local dir, base = real:match("^(.*)/([^/]+)$")
  local d
  d, err = ct.fs.opendir(dir == "" and "/" or dir)
  if not d then return nil, err end
  local f
  f, err = d:open(base)
  d:close()
  if not f then return nil, err end
  local data
  data, err = f:read(n)
  f:close()
  return data, err
end

function M.compression(file)
  local head, err = head_of(file, 512)
  if not head then return nil, err end
  for _, m in ipairs(MAGIC) do
    if head:sub(1, #m[1]) == m[1] then return m[2] end
  end
  if head:find("^BZh[1-9]") then return "bzip2" end
  return head:sub(258, 262) == "ustar" and "tar" or "unknown"
end

-- epoch_of("2026-11-01T12:00:00Z") -> whole seconds, or nil
function M.epoch_of(s)
  local t = clock.epoch(s)
  return t and math.floor(t)
end

-- mtime(doc) -> SOURCE_DATE_EPOCH, else the release time, else 0.
function M.mtime(doc)
  local sde = tonumber(os.getenv("SOURCE_DATE_EPOCH") or "")
  if sde then return math.floor(sde) end
  local r = type(doc) == "table" and doc.release
  return (type(r) == "table" and M.epoch_of(r.time)) or 0
end

-- named_paths(doc) -> the package paths a manifest names (image layouts,
-- hook files, runtime binaries), sorted, none inside another. The layouts
-- of the apps a delta package leaves out are not named.
function M.named_paths(doc)
  local set = {}
  local delta = package.delta_of(doc)
  for _, app in ipairs(doc.apps or {}) do
    if app.image and app.image.layout and not (delta and delta.images[app.name]) then
      set[(app.image.layout:gsub("/+$", ""))] = true
    end
    if app.hooks then set[app.hooks] = true end
  end
  for _, tool in ipairs({ "runc", "umoci" }) do
    if doc.runtime and doc.runtime[tool] then set[doc.runtime[tool]] = true end
  end
  local list = {}
  for p in pairs(set) do list[#list + 1] = p end
  table.sort(list)
  local out = {}
  for _, p in ipairs(list) do
    local inside = false
    for _, q in ipairs(out) do
      if p:sub(1, #q + 1) == q .. "/" then inside = true end
    end
    if not inside then out[#out + 1] = p end
  end
  return out
end

-- digests(dir, roots [, sources [, sha256 [, named]]]) -> files table
-- {path = "sha256:..."} of every file under roots; sources[root]: the
-- directory packed in its place (a delta's image layout without the blobs
-- it leaves out); sha256: the hash function (a ctcli.base.filedigest memo);
-- named: a blob (blobs/sha256/<hex> under a root) is taken at its name,
-- unread; the caller checks its content (write's opts.check).
function M.digests(dir, roots, sources, sha256, named)
  sha256 = sha256 or ct.hash.sha256_file
  local files = json.object({})
  for _, r in ipairs(roots) do
    local host = sources and sources[r] or (dir .. "/" .. r)
    local st = ct.fs.lstat(host)
    if st and st.type == "dir" then
      for _, rel in ipairs(signing.files_of(host)) do
        local blob = named and rel:match("^blobs/sha256/(" .. ("%x"):rep(64) .. ")$")
        if blob then
          files[r .. "/" .. rel] = "sha256:" .. blob
        else
          local h, err = sha256(host .. "/" .. rel)
          if not h then return nil, err end
          files[r .. "/" .. rel] = "sha256:" .. h
        end
      end
    elseif st then
      local h, err = sha256(host)
      if not h then return nil, err end
      files[r] = "sha256:" .. h
    else
      return nil, r .. ": no such file or directory in " .. dir
    end
  end
  return files
end

-- links(roots, files) -> {[name] = earlier name}: each image layout's blob
-- (<layout>/blobs/sha256/<hex>) whose content (files: the digests) a blob
-- archived before it has. The archive holds such a blob once and then as
-- hard links: ten apps on one base carry the base once, and an install
-- reads and checks it once. Archive order: roots sorted, as write does; in
-- a layout the blobs sort by name.
function M.links(roots, files)
  local sorted = {}
  for _, r in ipairs(roots) do sorted[#sorted + 1] = r end
  table.sort(sorted)
  local blobs = {}
  for name, digest in pairs(files) do
    for i, r in ipairs(sorted) do
      local rel = name:sub(1, #r + 1) == r .. "/" and name:sub(#r + 2)
      if rel and rel:match("^blobs/sha256/%x+$") then
        blobs[#blobs + 1] = { name = name, rank = i, rel = rel, digest = digest }
        break
      end
    end
  end
  table.sort(blobs, function(a, b)
    if a.rank ~= b.rank then return a.rank < b.rank end
    return a.rel < b.rel
  end)
  local first, links = {}, {}
  for _, b in ipairs(blobs) do
    if first[b.digest] then links[b.name] = first[b.digest] else first[b.digest] = b.name end
  end
  return links
end

-- check(files, sums, host_of) -> true | nil, msg: each file's digest in
-- files against the sha256 of the bytes archived (sums, by name); a file
-- archived without data (a hard link to one before it, a symlink) is
-- hashed at host_of(name).
local function check(files, sums, host_of)
  local names = {}
  for name in pairs(files) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local got = sums[name]
    if not got then
      local err
      got, err = ct.hash.sha256_file(host_of(name))
      if not got then return nil, err end
    end
    if "sha256:" .. got ~= files[name] then
      if name:match("/blobs/sha256/%x+$") then
        return nil, string.format("%s: does not match the digest it is named by (its content is sha256:%s)", name, got)
      end
      return nil, string.format("%s: changed while being packed (sha256:%s, then sha256:%s)", name,
        files[name]:sub(8), got)
    end
  end
  return true
end

-- write(out, dir, manifest_text, roots, opts) -> true | nil, msg. The archive:
-- manifest.json (these exact bytes), manifest.sig (opts.key signs), then
-- roots (paths under dir), sorted. opts: key, format ("zstd"|"gzip"), mtime,
-- sources (as for digests), links (see M.links), report (ctcli.base.report: a step line and
-- a bar), check (the files table: every file's content is hashed as it is archived and must
-- match it, else no package is left).
function M.write(out, dir, manifest_text, roots, opts)
  local stage, err = ct.fs.mkdtemp(M.tmpbase() .. "/ctcli-pack-XXXXXX")
  if not stage then return nil, "cannot create a temporary directory: " .. tostring(err) end
  local function done(ok, msg) ct.fs.rmtree(stage) return ok, msg end
  local ok, werr = ct.fs.write_atomic(stage .. "/manifest.json", manifest_text)
  if not ok then return done(nil, werr) end
  local entries = { { name = signing.MANIFEST, path = stage .. "/manifest.json" } }
  if opts.key then
    local sig, serr = signing.sign(opts.key, manifest_text)
    if not sig then return done(nil, serr) end
    ok, werr = ct.fs.write_atomic(stage .. "/manifest.sig", sig)
    if not ok then return done(nil, werr) end
    entries[2] = { name = signing.SIGNATURE, path = stage .. "/manifest.sig" }
  end
  local sorted = {}
  for _, r in ipairs(roots) do sorted[#sorted + 1] = r end
  table.sort(sorted)
  for _, r in ipairs(sorted) do
    entries[#entries + 1] = { name = r, path = opts.sources and opts.sources[r] or (dir .. "/" .. r) }
  end
  local rep = report.of(opts.report)
  rep.step("packing %s", out:match("[^/]+$"))
  local total = 0
  -- The bar's total, only when someone is told (a walk of the tree).
  for _, e in ipairs(opts.report and entries or {}) do total = total + (ct.fs.du(e.path) or 0) end
  local bar = rep.bar("packing", total)
  local res, cerr = ct.archive.create(out, entries, {
    format = opts.format or "zstd", mtime = opts.mtime or 0, owner0 = true, links = opts.links,
    sha256 = opts.check ~= nil,
    progress = opts.report and function(bytes) bar.set(bytes) end,
  })
  if res then bar.done() else bar.stop() end
  if not res then return done(nil, cerr) end
  if opts.check then
    local ok2, kerr = check(opts.check, res.sha256, function(name)
      local root = name
      for _, r in ipairs(sorted) do
        if name:sub(1, #r + 1) == r .. "/" then root = r end
      end
      local base = opts.sources and opts.sources[root] or (dir .. "/" .. root)
      return base .. name:sub(#root + 1)
    end)
    if not ok2 then
      ct.fs.unlink(out)
      return done(nil, kerr)
    end
  end
  return done(true)
end

return M
