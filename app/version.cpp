// app/version.cpp — the strings of version.h, from compile definitions on this one file (so a new commit
// recompiles nothing else).
#include "app/version.h"

namespace tessera::app {

const char* version() { return TESSERA_VERSION; }
const char* commit() { return TESSERA_GIT_COMMIT; }

}  // namespace tessera::app
