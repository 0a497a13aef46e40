# Writes OUT, a C file holding the operator console's page (console.h's st_console_assets):
# each file of DIR listed below as a byte array, with the path it is served at and its
# content type. Run by CMake at build time (cmake -P), so the page needs no build step and
# no tool beyond CMake.
# Every file is UTF-8 text.
set(assets
  "index.html|/console|text/html"
  "login.html|/console/login|text/html"
  "console.css|/console/console.css|text/css"
  "console.js|/console/console.js|text/javascript")
set(body "/* Made by station/console/embed.cmake from station/console/: edit those files. */\n")
string(APPEND body "#include \"console.h\"\n\n")
set(table "")
# Sixteen bytes a line (CMake's regular expressions have no {16}).
string(REPEAT "0x..," 16 row)
set(i 0)
foreach(a IN LISTS assets)
  string(REPLACE "|" ";" parts "${a}")
  list(GET parts 0 file)
  list(GET parts 1 path)
  list(GET parts 2 ctype)
  file(READ ${DIR}/${file} hex HEX)
  string(LENGTH "${hex}" n)
  math(EXPR n "${n} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(REGEX REPLACE "(${row})" "\\1\n\t" hex "${hex}")
  string(APPEND body "static const unsigned char asset${i}[] = {\n\t${hex}\n};\n\n")
  string(APPEND table "\t{ \"${path}\", \"${ctype}; charset=utf-8\", asset${i}, ${n} },\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND body "const struct st_console_asset st_console_assets[] = {\n${table}\t{ 0, 0, 0, 0 },\n};\n")
file(WRITE ${OUT}.tmp "${body}")
file(RENAME ${OUT}.tmp ${OUT})
