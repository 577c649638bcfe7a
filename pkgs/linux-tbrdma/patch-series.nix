# SPDX-License-Identifier: MIT
# Parses driver/patches/series into kernelPatches entries. The series format: one patch file
# name per line, in order, each directly below a `# reason` comment line; blank lines and
# other comments are free. Builtins only, so tests/nix can evaluate it without nixpkgs.
{
  seriesFile,
  patchDir,
}:
let
  trim =
    text:
    let
      found = builtins.match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" text;
    in
    if found == null then "" else builtins.head found;

  isComment = text: builtins.substring 0 1 text == "#";
  commentText = text: trim (builtins.substring 1 (builtins.stringLength text) text);

  lines = builtins.filter builtins.isString (builtins.split "\n" (builtins.readFile seriesFile));

  where = number: "${toString seriesFile}:${toString number}";

  patchEntry =
    number: fileName: reason:
    let
      patch = patchDir + "/${fileName}";
    in
    if builtins.match "[A-Za-z0-9._+-]+" fileName == null then
      throw "${where number}: '${fileName}' is not a plain patch file name"
    else if reason == "" then
      throw "${where number}: patch '${fileName}' needs a '# reason' comment on the line above"
    else if !builtins.pathExists patch then
      throw "${where number}: patch file '${fileName}' does not exist next to the series file"
    else
      {
        name =
          let
            stem = builtins.match "(.*)\\.(patch|diff)" fileName;
          in
          if stem == null then fileName else builtins.head stem;
        inherit patch reason;
      };

  step =
    state: line:
    let
      text = trim line;
      number = state.number + 1;
    in
    if text == "" then
      state
      // {
        inherit number;
        reason = "";
      }
    else if isComment text then
      state
      // {
        inherit number;
        reason = commentText text;
      }
    else if builtins.elem text state.seen then
      throw "${where number}: patch '${text}' is listed twice"
    else
      {
        inherit number;
        reason = "";
        seen = state.seen ++ [ text ];
        patches = state.patches ++ [ (patchEntry number text state.reason) ];
      };

  parsed = builtins.foldl' step {
    number = 0;
    reason = "";
    seen = [ ];
    patches = [ ];
  } lines;
in
parsed.patches
