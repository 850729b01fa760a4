-- Runs deploy/argocd/health.lua against sample resource states.
-- Usage: lua health_test.lua <path to health.lua>
local script = assert(loadfile(arg[1]))
local failures = 0
local function check(name, object, want)
  _G.obj = object
  local hs = script()
  if hs.status ~= want then
    failures = failures + 1
    print(string.format("FAIL %s: got %s (%s), want %s", name, tostring(hs.status), tostring(hs.message), want))
  else
    print(string.format("ok %s -> %s", name, hs.status))
  end
end
local function cond(t, s, reason, message)
  return { type = t, status = s, reason = reason, message = message or "" }
end
check("no status yet", { metadata = { generation = 1 } }, "Progressing")
check("ready", { metadata = { generation = 2 }, status = { observedGeneration = 2, conditions = {
  cond("Ready", "True", "Ready", "project prj_1 is ready"), cond("Reconciling", "False", "Idle"), cond("Stalled", "False", "Idle") } } }, "Healthy")
check("ready but for an older generation", { metadata = { generation = 3 }, status = { observedGeneration = 2, conditions = {
  cond("Ready", "True", "Ready") } } }, "Progressing")
check("creating", { metadata = { generation = 1 }, status = { observedGeneration = 1, conditions = {
  cond("Ready", "False", "Creating"), cond("Reconciling", "True", "Creating", "creating the project"), cond("Stalled", "False", "Idle") } } }, "Progressing")
check("waiting for project", { metadata = { generation = 1 }, status = { observedGeneration = 1, conditions = {
  cond("Ready", "False", "WaitingForProject"), cond("Reconciling", "True", "WaitingForProject") } } }, "Progressing")
check("stalled", { metadata = { generation = 1 }, status = { observedGeneration = 1, conditions = {
  cond("Ready", "False", "ProviderNotFound"), cond("Reconciling", "False", "Idle"), cond("Stalled", "True", "ProviderNotFound", "DatabaseProvider \"default\" not found") } } }, "Degraded")
check("ready with a failed rotation stays healthy", { metadata = { generation = 1 }, status = { observedGeneration = 1, conditions = {
  cond("Ready", "True", "Ready"), cond("Stalled", "False", "Idle"), cond("RotationFailed", "True", "ProbeFailed") } } }, "Healthy")
check("cluster-scoped provider without generation", { metadata = {}, status = { conditions = {
  cond("Ready", "True", "Ready") } } }, "Healthy")
if failures > 0 then
  os.exit(1)
end
