-- A pre_upgrade guard: refuse the upgrade (nothing changes) when the
-- filesystem holding the app's data has less than 100 MiB free.
local MIN_FREE_KB = 100 * 1024

return {
  pre_upgrade = function(ctx)
    local r = ctx.run({ "df", "-Pk", ctx.paths.data })
    if not r or r.code ~= 0 then ctx.fail("cannot check free space: " .. (r and r.stderr or "df failed")) end
    local avail = tonumber(r.stdout:match("\n%S+%s+%d+%s+%d+%s+(%d+)"))
    if not avail then ctx.fail("cannot read df's output") end
    if avail < MIN_FREE_KB then
      ctx.fail(string.format("only %d MiB free under %s; need %d MiB", avail // 1024, ctx.paths.data, MIN_FREE_KB // 1024))
    end
    ctx.log(string.format("%d MiB free, upgrading %s from %s to %s", avail // 1024, ctx.app,
      tostring(ctx.from_version), tostring(ctx.to_version)))
  end,
}
