-- Argo CD health check for every dbops.dev kind (DatabaseProject,
-- DatabaseBranch, DatabaseSnapshot, ByokCredential, DatabaseRole, DatabaseSnapshotSchedule,
-- DatabaseProvider).
-- Maps the kstatus conditions the operator writes to Argo CD health:
--   status not yet written for this generation -> Progressing
--   Stalled=True                               -> Degraded
--   Ready=True                                 -> Healthy
--   otherwise (Reconciling, waiting)           -> Progressing
local hs = { status = "Progressing", message = "Waiting for the dbops operator" }
if obj.status == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.message = "The operator has not observed the latest spec yet"
  return hs
end
local function find(type_)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end
local stalled = find("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or "")
  return hs
end
local ready = find("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
local reconciling = find("Reconciling")
if reconciling ~= nil then
  hs.message = (reconciling.reason or "Reconciling") .. ": " .. (reconciling.message or "")
elseif ready ~= nil then
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
end
return hs
