-- Opening a package against a root: extracted into the root's tmp/ (with
-- the package's limits), its signature enforced when the root trusts keys,
-- read with the root's store for what a delta leaves out.
local ct = require("ct")
local filedigest = require("ctcli.base.filedigest")
local images = require("ctcli.store.images")
local layers = require("ctcli.store.layers")
local package = require("ctcli.model.package")
local report = require("ctcli.base.report")
local signing = require("ctcli.model.signing")

local M = {}

-- stored_blob(paths, digest) -> the root's stored file of a blob, or nil
function M.stored_blob(paths, digest)
  local file = layers.blob_path(paths, digest)
  local st = ct.fs.lstat(file)
  return st and st.type == "file" and file or nil
end

-- open(paths, file [, rep]) -> pkg | nil, msg. The caller must call
-- pkg:cleanup(). rep: the reporter (ctcli.base.report) told of the extraction.
function M.open(paths, file, rep)
  local st = ct.fs.stat(file)
  if not st then return nil, file .. ": no such package" end
  if st.type ~= "file" then return nil, file .. ": not a file" end
  local label = file:match("[^/]+$")
  local dir, err = ct.fs.mkdtemp(paths.tmp .. "/package-XXXXXX")
  if not dir then return nil, "cannot create a staging directory: " .. err end
  local cleanup = function() ct.fs.rmtree(dir) end
  rep = report.of(rep)
  rep.step("extracting %s", label)
  local bar = rep.bar("extracting", st.size)
  -- Written back as extracted: its blobs become the store's (hard links),
  -- which the unpack flushes to disk.
  local stats, xerr = ct.archive.extract(file, dir, {
    max_entries = package.MAX_ENTRIES, max_bytes = package.MAX_BYTES, check_space = true, special = "refuse",
    writeback = true,
    progress = function(_, read) bar.set(read) end,
  })
  if stats then bar.done() else bar.stop() end
  if not stats then
    cleanup()
    return nil, xerr
  end
  -- With trusted keys, the signature and every file's digest are checked
  -- before anything else reads the package. One memo of digests for every
  -- reader: a blob the package holds once under several names (hard links)
  -- is read once.
  local sha256 = filedigest.new()
  local signer, serr = signing.enforce(paths, dir, label, sha256)
  if serr then
    cleanup()
    return nil, serr
  end
  local pkg, perr = package.read_dir(dir, label, { have = function(name, digest)
    return images.has(paths, name, digest)
  end, blob = function(digest) return M.stored_blob(paths, digest) end, sha256 = sha256 })
  if not pkg then
    cleanup()
    return nil, perr
  end
  pkg.signer = signer
  pkg.sha256 = sha256
  pkg.file = file
  pkg.size = st.size
  pkg.cleanup = cleanup
  return pkg
end

return M
