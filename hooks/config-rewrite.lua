-- Rewriting an operator's config on upgrade, keeping their values: a
-- migration renames the key `greeting` to `welcome` in the app's config
-- file on the host (config/<app>/<path in the container>).
return {
  migrations = {
    ["0003-rename-greeting"] = function(ctx)
      local path = ctx.paths.config .. "/etc/" .. ctx.app .. "/app.conf"
      local text = ctx.read(path)
      if not text then return end -- nothing to rewrite on this host
      local rewritten = text:gsub("\ngreeting=", "\nwelcome="):gsub("^greeting=", "welcome=")
      if rewritten ~= text then
        ctx.write(path, rewritten)
        ctx.log("renamed greeting to welcome in " .. path)
      end
    end,
  },
}
