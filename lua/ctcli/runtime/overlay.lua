-- The mounts of the apps' rootfs (issue 15): an app of a layered image runs
-- on an overlayfs of its image's layers (lower) and its upper, mounted at
-- uppers/<app>/<id>/merged right before `runc create` and unmounted once its
-- container is deleted. Only ctcli.runtime.runc calls this (it is the one module
-- that talks to runc), for the app's container and for a temporary one.
-- Nothing to mount for a flat image or an own copy (no overlayfs).
local ct = require("ct")
local layers = require("ctcli.store.layers")

local M = {}

-- spec(paths, app_name, id) -> mount table for layers.mount_overlay, or
-- false when the upper needs no mount | nil, msg
local function spec(paths, app_name, id)
  local dir = layers.upper_dir(paths, app_name, id)
  if not ct.fs.exists(dir .. "/upper") then
    if ct.fs.exists(dir .. "/rootfs") then return false end
    return nil, "the writable layer " .. dir .. " is missing"
  end
  local info = layers.upper_info(paths, app_name, id)
  local key = info and info.image
  if type(key) ~= "string" then return nil, dir .. "/upper.json: names no image" end
  local name, digest = key:match("^([^@]+)@(.+)$")
  local store = require("ctcli.store.images")
  local list, m = store.layers_of(paths, name, digest)
  if not list then return nil, m or ("the image " .. key .. " of " .. dir .. " has no layers") end
  local lowers = layers.lowers(paths, list, m)
  for _, l in ipairs(lowers) do
    if not ct.fs.exists(l) then
      return nil, "layer " .. l .. " of " .. key .. " is missing (run the command again as root to extract it)"
    end
  end
  return { lower = lowers, upper = dir .. "/upper", work = dir .. "/work", target = dir .. "/merged" }
end

-- ensure_upper(paths, app_name, id) -> true, mounted_now | nil, msg
function M.ensure_upper(paths, app_name, id)
  local s, err = spec(paths, app_name, id)
  if s == nil then return nil, err end
  if not s then return true, false end
  if ct.fs.mounted(s.target) then return true, false end
  local ok, merr = layers.mount_overlay(s)
  if not ok then return nil, "cannot mount the rootfs of " .. app_name .. ": " .. tostring(merr) end
  return true, true
end

-- ensure(paths, app) -> true, mounted_now | nil, msg: for a release's app record.
function M.ensure(paths, app)
  if not app.upper then return true, false end
  return M.ensure_upper(paths, app.name, app.upper)
end

-- release_upper(paths, app_name, id) -> true | nil, msg: unmounted, if mounted.
function M.release_upper(paths, app_name, id)
  local target = layers.upper_dir(paths, app_name, id) .. "/merged"
  if not ct.fs.mounted(target) then return true end
  local ok, err = ct.fs.umount(target)
  if not ok then
    -- Busy (a process of the host sits in it): detached now, gone when it leaves.
    ok, err = ct.fs.umount(target, { detach = true })
  end
  if not ok then return nil, "cannot unmount " .. target .. ": " .. tostring(err) end
  return true
end

function M.release(paths, app)
  if not app.upper then return true end
  return M.release_upper(paths, app.name, app.upper)
end

-- release_all(paths, app_name) -> true | nil, msg: every upper of an app
-- unmounted (an app stopped, whatever release mounted it).
function M.release_all(paths, app_name)
  for _, id in ipairs(layers.uppers(paths, app_name)) do
    local ok, err = M.release_upper(paths, app_name, id)
    if not ok then return nil, err end
  end
  return true
end

-- of_path(root_path) -> paths, app_name, id when root_path (a bundle's
-- root.path) is an upper's merged/, else nil.
function M.of_path(root_path)
  if type(root_path) ~= "string" then return nil end
  local root, app, id = root_path:match("^(.+)/uppers/([^/]+)/([^/]+)/merged$")
  if not root then return nil end
  return require("ctcli.base.root").paths(root), app, id
end

-- mounted(paths, app) -> whether the app's rootfs is mounted now.
function M.mounted(paths, app)
  if not app.upper then return false end
  return ct.fs.mounted(layers.upper_dir(paths, app.name, app.upper) .. "/merged")
end

return M
