-- stage PKG: the slow half of an upgrade, done while everything runs and
-- without the root's lock; `upgrade --staged` is the quick half.
local json = require("ctcli.base.json")
local preview = require("ctcli.services.preview")
local staged = require("ctcli.services.staged")
local ui = require("ctcli.ui.console")

return {
  summary = "Prepare an upgrade while the apps run; 'upgrade --staged' cuts over",
  usage = "stage PKG",
  description = "Does every slow step of 'upgrade PKG' ahead of time: extracts and verifies the\n" ..
    "package, unpacks the images the store lacks, builds the release, compiles its\n" ..
    "hooks and runs the checks of 'plan' (disk space for the cutover's backup\n" ..
    "included). The release waits in releases/staged/, apart from the kept ones\n" ..
    "(list-releases shows it as staged; prune and rollback leave it alone; it stays\n" ..
    "across a reboot). Staging takes the root's lock only for moments, so start,\n" ..
    "stop, status and logs work meanwhile. One release is staged at a time: a new\n" ..
    "stage replaces it. 'ctcli upgrade --staged' (or 'upgrade PKG' of this package)\n" ..
    "then backs up the changed apps' data, stops them, swaps, migrates and starts,\n" ..
    "as long as the current release is still the one staged against; else it asks\n" ..
    "to re-stage. 'ctcli prune --staged' drops a staged release.",
  min_args = 1, max_args = 1,
  needs_root = true,
  -- Its steps (CTCLI_FAULT=stage:<step> kills there, :fail fails there,
  -- :pause holds there until $CTCLI_FAULT_RESUME exists). No journal: a
  -- stage changes no release and no app; what a killed one leaves in
  -- releases/staged/.work-* is removed by the next stage, by prune and by
  -- the recovery of any command.
  steps = { "prepare", "extract", "unpack", "stage", "place", "check", "register", "finish" },
  run = function(ctx)
    local rec, err = staged.stage(ctx, ctx.args[1])
    if not rec then return nil, err end
    if ctx.json then
      local p = rec.plan
      p.diff = nil
      json.print({
        staged = rec.id, against = rec.against, package = rec.package, replaced = rec.replaced or json.null,
        plan = p,
      })
      return true
    end
    preview.print(rec.plan, rec.plan.from, ui)
    ui.print("")
    if rec.replaced then ui.print("replaced the staged release %s", rec.replaced) end
    ui.print("staged %s (%s) against %s; cut over with 'ctcli upgrade --staged'", rec.id,
      ui.release_label(rec.release), rec.against)
    return true
  end,
}
