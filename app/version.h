// app/version.h — what `tessera --version` and GET /version report: the release and the git commit it was built
// from (read when CMake configures; "unknown" outside a git checkout).
#pragma once

namespace tessera::app {

const char* version();  // "0.1.0"
const char* commit();   // the short commit hash, "+dirty" when the tree had changes; or "unknown"

}  // namespace tessera::app
