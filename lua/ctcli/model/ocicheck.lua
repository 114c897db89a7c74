-- The integrity of an OCI image layout in a package (validate, pack): every
-- blob against the digest it is named by, and every descriptor the index
-- and the manifests hold (manifest, config, layers) against the blob it
-- names: present, a regular file, of the size it declares. A problem names
-- the file that does not match, relative to the package. Nothing here
-- trusts a file because another file names it: a blob changed after the
-- image was built fails, whoever reads it first.
local ct = require("ct")
local json = require("ctcli.base.json")

local M = {}

local INDEX_TYPES = {
  ["application/vnd.oci.image.index.v1+json"] = true,
  ["application/vnd.docker.distribution.manifest.list.v2+json"] = true,
}

-- check(dir, layout [, absent [, sha256 [, named]]]) -> problems {{file=,
-- path=, message=}}; layout is relative to dir (the package); absent: the
-- set of digests a delta package leaves out of this layout (the root's
-- store supplies them); sha256: the hash function (a ctcli.base.filedigest
-- memo, else ct.hash.sha256_file); named: a blob's content is not read
-- here, the caller hashes it later against its name (pack, as it archives it).
function M.check(dir, layout, absent, sha256, named)
  absent = absent or {}
  sha256 = sha256 or ct.hash.sha256_file
  local problems = {}
  local function add(file, message, path)
    problems[#problems + 1] = { file = file, path = path or "", message = message }
  end
  local base = dir .. "/" .. layout
  local blobs = layout .. "/blobs"
  -- Every blob, named or not: its name is its digest.
  local ok_blob = {}
  for _, alg in ipairs(ct.fs.dir(base .. "/blobs") or {}) do
    local adir = base .. "/blobs/" .. alg
    local st = ct.fs.lstat(adir)
    if alg ~= "sha256" then
      add(blobs .. "/" .. alg, "blobs of digest algorithm '" .. alg .. "' cannot be checked (only sha256)")
    elseif not st or st.type ~= "dir" then
      add(blobs .. "/" .. alg, "expected a directory of blobs")
    else
      for _, name in ipairs(ct.fs.dir(adir) or {}) do
        local rel = blobs .. "/sha256/" .. name
        local bst = ct.fs.lstat(adir .. "/" .. name)
        if not name:match("^%x+$") or #name ~= 64 then
          add(rel, "not a blob name (64 hex digits of its sha256)")
        elseif not bst or bst.type ~= "file" then
          add(rel, "a blob must be a regular file, this is a " .. tostring(bst and bst.type))
        elseif named then
          ok_blob["sha256:" .. name] = bst.size
        else
          local sum, err = sha256(adir .. "/" .. name)
          if not sum then
            add(rel, "cannot be read: " .. tostring(err))
          elseif sum ~= name then
            add(rel, "does not match the digest it is named by (its content is sha256:" .. sum .. ")")
          else
            ok_blob["sha256:" .. name] = bst.size
          end
        end
      end
    end
  end
  -- descriptor(d, where, from) -> the blob's path when it is there and whole.
  local function descriptor(d, where, from)
    if type(d) ~= "table" or type(d.digest) ~= "string" or not d.digest:match("^sha256:%x+$") then
      add(from, "expected a descriptor with a sha256 digest", where)
      return nil
    end
    local rel = blobs .. "/sha256/" .. d.digest:sub(8)
    local st = ct.fs.lstat(dir .. "/" .. rel)
    if not st then
      if not absent[d.digest] then add(from, "names " .. d.digest .. ", which is missing (" .. rel .. ")", where) end
      return nil
    end
    if ok_blob[d.digest] == nil then return nil end -- reported above
    if d.size ~= nil and d.size ~= ok_blob[d.digest] then
      -- A blob taken at its name is read now: a changed one says so.
      local sum = named and ct.hash.sha256_file(dir .. "/" .. rel)
      if sum and sum ~= d.digest:sub(8) then
        add(rel, "does not match the digest it is named by (its content is sha256:" .. sum .. ")")
        return nil
      end
      add(rel, string.format("is %d bytes, but %s says %s (%s)", ok_blob[d.digest], from, tostring(d.size), where))
      return nil
    end
    return rel
  end
  local function walk_index(doc, from, depth)
    for i, d in ipairs(type(doc.manifests) == "table" and doc.manifests or {}) do
      local where = "manifests[" .. (i - 1) .. "]"
      local rel = descriptor(d, where, from)
      local m = rel and json.decode(ct.fs.read(dir .. "/" .. rel) or "")
      if rel and type(m) ~= "table" then
        add(rel, "not a JSON manifest")
      elseif rel then
        if (INDEX_TYPES[d.mediaType] or INDEX_TYPES[m.mediaType] or m.manifests) and depth < 4 then
          walk_index(m, rel, depth + 1)
        else
          descriptor(m.config, "config", rel)
          for j, l in ipairs(type(m.layers) == "table" and m.layers or {}) do
            descriptor(l, "layers[" .. (j - 1) .. "]", rel)
          end
        end
      end
    end
  end
  local text = ct.fs.read(base .. "/index.json")
  local index = text and json.decode(text)
  if type(index) ~= "table" then
    add(layout .. "/index.json", text and "not a JSON document" or "missing")
  else
    walk_index(index, layout .. "/index.json", 1)
  end
  return problems
end

return M
