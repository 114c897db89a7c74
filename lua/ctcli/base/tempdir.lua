-- Temporary directories and staging trees that go away with the scope
-- holding them: `local tmp <close>, err = tempdir.make(template)` then
-- tmp.path; a return, a failure or a Lua error removes the tree, so no exit
-- path leaves one behind. (A kill does not: recovery and the next command
-- clean tmp/.)
local ct = require("ct")

local M = {}

local Tempdir = {}
Tempdir.__index = Tempdir

-- remove(): the tree goes now (once; the scope's end does nothing more).
function Tempdir:remove()
  if self.removed then return end
  self.removed = true
  ct.fs.rmtree(self.path)
end

Tempdir.__close = Tempdir.remove

-- make(template) -> tempdir | nil, msg: a new directory (template ends in XXXXXX).
function M.make(template)
  local path, err = ct.fs.mkdtemp(template)
  if not path then return nil, err end
  return setmetatable({ path = path }, Tempdir)
end

-- of(path) -> tempdir: a tree another call made, owned by this scope from
-- now on (removed with it unless it was handed on).
function M.of(path)
  return setmetatable({ path = path }, Tempdir)
end

-- closing(t) -> t, made to call t.cleanup() once when a `local x <close>`
-- holding it goes out of scope (an opened package and its temp dir).
local Owned = {
  __close = function(t)
    if t.cleaned then return end
    t.cleaned = true
    t.cleanup()
  end,
}

function M.closing(t)
  if not t then return t end
  local mt = getmetatable(t)
  if mt == nil then return setmetatable(t, Owned) end
  assert(mt.__close, "tempdir.closing: a table with a metatable of its own")
  return t
end

return M
