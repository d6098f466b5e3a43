/* The header compiles on its own, and included twice. */
#include "metafed.h"
#include "metafed.h"

int main(void) {
    return METAFED_OK + METAFED_VERSION_MAJOR * 0;
}
