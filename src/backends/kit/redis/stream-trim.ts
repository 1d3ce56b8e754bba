/**
 * A Lua function for scripts that keep a stream bounded by age: `trim_by_age(key, cutoff, newest, field)`
 * removes the oldest entries whose time field (the `field`-th item of an entry's field list, a number
 * in ms) is below `cutoff`, scanning from the oldest and stopping at the first young one or at the
 * entry `newest` (the one just added, never trimmed by its own append). Each trimmed entry is read
 * once, so the scan costs O(1) amortized per append and one `XRANGE … COUNT 1` when nothing is due.
 * Returns the number of entries removed.
 */
export const TRIM_BY_AGE_LUA = `
local function trim_by_age(key, cutoff, newest, field)
  local keep = nil
  local passed = 0
  local start = '-'
  local count = 1
  while not keep do
    local batch = redis.call('XRANGE', key, start, '+', 'COUNT', count)
    if #batch == 0 then break end
    for _, entry in ipairs(batch) do
      if entry[1] == newest or tonumber(entry[2][field]) >= cutoff then
        keep = entry[1]
        break
      end
      passed = passed + 1
      start = '(' .. entry[1]
    end
    count = 100
  end
  if keep and passed > 0 then redis.call('XTRIM', key, 'MINID', keep) end
  return passed
end
`;
