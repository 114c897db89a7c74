-- A schema migration run inside the app's container with ctx.exec.
-- Migrations run once each, after the new release is in place and before
-- its apps start (in a temporary container then), in the order the
-- manifest's "migrations" list gives, else sorted by id. ctcli records the
-- ids that ran in data/<app>/.ctcli/migrations.json.
return {
  migrations = {
    ["0001-create-schema"] = function(ctx)
      local r = ctx.exec({ "sh", "-c", "mkdir -p /var/lib/" .. ctx.app .. " && echo 1 > /var/lib/" .. ctx.app .. "/schema" })
      if r.code ~= 0 then ctx.fail("creating the schema failed: " .. r.stderr) end
    end,
    ["0002-add-index"] = function(ctx)
      local r = ctx.exec({ "sh", "-c", "echo 2 > /var/lib/" .. ctx.app .. "/schema" })
      if r.code ~= 0 then ctx.fail("adding the index failed: " .. r.stderr) end
      ctx.log("schema is at version 2")
    end,
  },
}
