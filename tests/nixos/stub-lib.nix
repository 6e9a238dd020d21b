# Just enough of nixpkgs' lib to evaluate nixos/module.nix without nixpkgs, plus a miniature
# module system (evalOptions, resolve) for tests/nixos/eval.nix. Options are plain attrsets;
# types carry a name, a check and their element types.
let
  inherit (builtins)
    all
    any
    attrNames
    concatStringsSep
    elem
    filter
    foldl'
    isAttrs
    isFunction
    listToAttrs
    mapAttrs
    ;

  simple = name: check: { inherit name check; };
  isOption = value: isAttrs value && (value._type or null) == "option";
  isIf = value: isAttrs value && (value._type or null) == "if";

  lib = rec {
    inherit all attrNames concatStringsSep mapAttrs;

    types = {
      bool = simple "bool" builtins.isBool;
      int = simple "int" builtins.isInt;
      str = simple "str" builtins.isString;
      path = simple "path" (v: builtins.isPath v || (builtins.isString v && hasPrefix "/" v));
      package = simple "package" (v: isAttrs v && v ? outPath);
      attrs = simple "attrs" isAttrs;
      enum = values: simple "enum" (v: elem v values) // { inherit values; };
      strMatching =
        pattern:
        simple "strMatching" (v: builtins.isString v && builtins.match pattern v != null)
        // { inherit pattern; };
      nullOr = elemType: simple "nullOr" (v: v == null || elemType.check v) // { inherit elemType; };
      listOf =
        elemType: simple "listOf" (v: builtins.isList v && all elemType.check v) // { inherit elemType; };
      attrsOf = elemType: simple "attrsOf" isAttrs // { inherit elemType; };
      oneOf = alternatives: simple "oneOf" (v: any (t: t.check v) alternatives);
      submodule = module: simple "submodule" isAttrs // { inherit module; };
    };

    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = what: mkOption {
      type = types.bool;
      default = false;
      description = "Whether to enable ${what}.";
    };
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };

    optional = condition: value: if condition then [ value ] else [ ];
    mkBefore = value: value;
    optionalAttrs = condition: attrs: if condition then attrs else { };
    optionalString = condition: string: if condition then string else "";
    nameValuePair = name: value: { inherit name value; };
    filterAttrs =
      pred: attrs:
      listToAttrs (
        map (name: nameValuePair name attrs.${name}) (filter (name: pred name attrs.${name}) (attrNames attrs))
      );
    mapAttrs' = f: attrs: listToAttrs (map (name: f name attrs.${name}) (attrNames attrs));
    mapAttrsToList = f: attrs: map (name: f name attrs.${name}) (attrNames attrs);
    attrValues = attrs: map (name: attrs.${name}) (attrNames attrs);
    concatMap = f: list: builtins.concatLists (map f list);
    removePrefix =
      prefix: s:
      if hasPrefix prefix s then
        builtins.substring (builtins.stringLength prefix) (builtins.stringLength s) s
      else
        s;
    hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
    toUpper =
      builtins.replaceStrings (builtins.genList (i: builtins.substring i 1 lower) 26) (
        builtins.genList (i: builtins.substring i 1 upper) 26
      );
    lower = "abcdefghijklmnopqrstuvwxyz";
    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    escapeShellArg = s: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s)}'";

    # The miniature module system: option defaults filled in, given values type-checked,
    # unknown names refused.
    evalOptions =
      where: options: given:
      let
        unknown = filter (name: !(options ? ${name})) (attrNames given);
      in
      if unknown != [ ] then
        throw "${where}: unknown option(s) ${concatStringsSep ", " unknown}"
      else
        mapAttrs (
          name: option:
          let
            here = "${where}.${name}";
          in
          if !isOption option then
            evalOptions here option (given.${name} or { })
          else if given ? ${name} then
            coerce here name option.type given.${name}
          else if option ? default then
            option.default
          else
            throw "${here} has no value"
        ) options;

    coerce =
      where: name: type: value:
      if !(type.check value) then
        throw "${where}: not a ${type.name}"
      else if type.name == "attrsOf" then
        mapAttrs (key: coerce "${where}.${key}" key type.elemType) value
      else if type.name == "listOf" then
        map (coerce where name type.elemType) value
      else if type.name == "nullOr" then
        (if value == null then null else coerce where name type.elemType value)
      else if type.name == "submodule" then
        let
          module = if isFunction type.module then type.module { inherit name; } else type.module;
        in
        evalOptions where module.options value
      else
        value;

    # mkIf pushed down: a false condition drops the attribute (or the whole block).
    resolve =
      value:
      if isIf value then
        (if value.condition then resolve value.content else { })
      else if isAttrs value && !(value ? outPath) then
        mapAttrs (_: resolve) (filterAttrs (_: v: !(isIf v && !v.condition)) value)
      else
        value;
  };
in
lib
