/**
 * A Lua function for scripts that keep a stream bounded by age: `trim_by_age(key, cutoff, newest,
 * field, mark)` removes the oldest entries whose time field (the `field`-th item of an entry's field
 * list, a number in ms) is below `cutoff`, scanning from the oldest and stopping at the first young one
 * or at the entry `newest` (the one just added, never trimmed by its own append). Each trimmed entry
 * is read once, so the scan costs O(1) amortized per append. Returns the number of entries removed
 * and, as a second value, the head's time as this call knows it (the mark it found young enough, or
 * the time of the entry it kept), or nil.
 *
 * `mark` (a key, or nil) keeps the time of the oldest entry the last scan kept. Nothing but trimming
 * removes entries from the head, so it is a lower bound of the head's time, and while it is not below
 * the cutoff nothing can be due: one GET instead of an `XRANGE … COUNT 1` that copies the oldest entry
 * out. Without it every call reads the head. Appends whose entries are younger than the cutoff
 * (every caller's: the cutoff is the append's time minus the age) keep the mark rising: a scan keeps
 * an entry at or above the cutoff, which is above the mark it found. So a caller may remember the
 * second value and skip the call while the cutoff stays at or below it: the call would return at its
 * GET.
 */
export const TRIM_BY_AGE_LUA = `
local function trim_by_age(key, cutoff, newest, field, mark)
  if mark then
    local known = tonumber(redis.call('GET', mark) or '0')
    if known >= cutoff then return 0, known end
  end
  local keep = nil
  local kept_at = nil
  local passed = 0
  local start = '-'
  local count = 1
  while not keep do
    local batch = redis.call('XRANGE', key, start, '+', 'COUNT', count)
    if #batch == 0 then break end
    for _, entry in ipairs(batch) do
      local at = tonumber(entry[2][field])
      if entry[1] == newest or at >= cutoff then
        keep = entry[1]
        kept_at = at
        break
      end
      passed = passed + 1
      start = '(' .. entry[1]
    end
    count = 100
  end
  if keep and passed > 0 then redis.call('XTRIM', key, 'MINID', keep) end
  if mark and kept_at then redis.call('SET', mark, string.format('%d', kept_at)) end
  return passed, kept_at
end
`;
