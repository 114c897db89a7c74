-- The demo's package hook for web: a note in logs/ctcli.log at install,
-- and a smoke test before an upgrade commits.
return {
  post_install = function(ctx)
    ctx.log("web " .. tostring(ctx.to_version) .. " installed; its config is " .. ctx.paths.config .. "/etc/web/app.conf")
  end,
  post_upgrade = function(ctx)
    local r = ctx.exec({ "cat", "/etc/web/app.conf" })
    if r.code ~= 0 then ctx.fail("smoke test failed: " .. r.stderr) end
  end,
}
