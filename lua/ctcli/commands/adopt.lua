-- adopt: converts a root the Go ctcli made into this ctcli's layout, in
-- place, stopping nothing (ctcli.services.adopt). The first changing command on
-- such a root does the same; this command shows what it will do first.
local ui = require("ctcli.ui.console")
local adopt = require("ctcli.services.adopt")

return {
  -- --json is a usage error: no document to print (docs/json.md)
  no_json = "it reports in prose; 'release-info --json' and 'list-releases --json' show the result",
  summary = "Take over a root the Go ctcli made, in place (running apps keep running)",
  usage = "adopt [-y]",
  description = "Backs the root up in the Go ctcli's own format (its way back), moves each app's\n" ..
    "rootfs into the image store, writes the release as releases/<id>/ and makes\n" ..
    "current-release a symlink to it. Running apps keep running with the Go ctcli's\n" ..
    "user mapping until their next start. The first changing command adopts, too.\n" ..
    "See docs/migrating.md.",
  max_args = 0,
  needs_root = true, needs_lock = true, adopts_itself = true,
  steps = adopt.STEPS,
  run = function(ctx)
    local plan, err = adopt.plan(ctx)
    if plan == nil then return nil, err end
    if not plan then
      ui.print("%s is not a root of the Go ctcli (or it is adopted already): nothing to do", ctx.root)
      return true
    end
    if plan.empty then
      ui.print("adopt %s: the Go ctcli's root holds no release; its empty current-release/ goes", ctx.root)
    else
      local g = plan.gorel
      ui.print("adopt %s: the Go ctcli's release %s (created %s) becomes release %s", ctx.root,
        tostring(g.info.id), g.created, g.id)
      ui.print("1. back up current-release/, data/ and config/ in the Go ctcli's format to releases/<date>/ " ..
        "(restorable by the Go ctcli; running apps paused one at a time while their data is read)")
      ui.print("2. move each app's rootfs into images/ (a rename, no copy):")
      local rows = {}
      for _, a in ipairs(plan.apps) do
        rows[#rows + 1] = { a.name, a.state, a.pid and tostring(a.pid) or "-", "images/" .. a.key }
      end
      ui.table({ "APP", "STATE", "PID", "ROOTFS MOVES TO" }, rows)
      ui.print("3. write releases/%s/ (release.json, bundles with today's defaults)", g.id)
      ui.print("4. record each app's user mapping as the Go ctcli's (container root is host root) until its next " ..
        "start, when it moves to the root's own range; configs, data and logs stay where they are")
      ui.print("5. replace current-release/ by a symlink to releases/%s", g.id)
      ui.print("nothing is stopped; adoption is one-way except through the Go-format backup (docs/migrating.md)")
    end
    local yes, why, code = ui.ask(ctx, "Adopt this root?", "adopt")
    if not yes then return nil, why, code end
    local res, rerr = adopt.run(ctx)
    if not res then return nil, rerr end
    ui.print("%s", adopt.summary(ctx, res))
    return true
  end,
}
