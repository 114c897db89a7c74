-- A post_upgrade smoke test: the new version must answer before the
-- upgrade commits; a failure here rolls the upgrade back (data restored).
return {
  post_upgrade = function(ctx)
    local r = ctx.exec({ "cat", "/etc/" .. ctx.app .. "/app.conf" })
    if r.code ~= 0 then
      ctx.fail("smoke test failed: the config is not readable in the container: " .. r.stderr)
    end
    ctx.log("smoke test passed for " .. ctx.app .. " " .. tostring(ctx.to_version))
  end,
}
