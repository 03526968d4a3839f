!! Status codes shared by every FKB call, and the two ways of reporting them.
!!
!! Internal procedures always return `stat` and `msg`; the public Fortran API turns them into
!! the optional `stat=`/`errmsg=` arguments (like the intrinsic `allocate`), and the C API into
!! an `fkb_status` plus the thread's last-error text. The values equal the C enum `fkb_status`
!! in include/fkb/fkb.h (tests/c/test_c_api.c checks that they agree).
module fkb_errors
  implicit none
  private
  public :: FKB_OK, FKB_ERR_ARGUMENT, FKB_ERR_IO, FKB_ERR_FORMAT, FKB_ERR_VERSION, &
            FKB_ERR_UNSUPPORTED, FKB_ERR_SHAPE, FKB_ERR_MEMORY, FKB_ERR_INTERNAL, FKB_ERR_LAYER
  public :: fkb_status_name, set_error, report
  public :: fkb_layer_fail, clear_layer_error, take_layer_error

  integer, parameter :: FKB_OK = 0
  integer, parameter :: FKB_ERR_ARGUMENT = -1     !! NULL pointer, batch <= 0, bad index
  integer, parameter :: FKB_ERR_IO = -2           !! file cannot be opened, read or written
  integer, parameter :: FKB_ERR_FORMAT = -3       !! malformed or truncated model file
  integer, parameter :: FKB_ERR_VERSION = -4      !! format version not supported
  integer, parameter :: FKB_ERR_UNSUPPORTED = -5  !! unknown layer, activation or option
  integer, parameter :: FKB_ERR_SHAPE = -6        !! shapes disagree
  integer, parameter :: FKB_ERR_MEMORY = -7       !! allocation failed or absurd size
  integer, parameter :: FKB_ERR_INTERNAL = -8     !! a bug in FKB
  integer, parameter :: FKB_ERR_LAYER = -9        !! a custom layer reported a failure

  ! A layer's forward cannot return a status (it is called deep inside the network's plan), so
  ! a custom layer that fails calls fkb_layer_fail, which records the message for the calling
  ! thread; predict clears it before running the layers and reports it afterwards.
  logical, save :: layer_failed = .false.
  character(len=1024), save :: layer_message = ''
  !$omp threadprivate(layer_failed, layer_message)

contains

  pure function fkb_status_name(code) result(name)
    !! Short English name of a status code.
    integer, intent(in) :: code
    character(len=:), allocatable :: name
    select case (code)
    case (FKB_OK);              name = 'success'
    case (FKB_ERR_ARGUMENT);    name = 'invalid argument'
    case (FKB_ERR_IO);          name = 'input/output error'
    case (FKB_ERR_FORMAT);      name = 'malformed model file'
    case (FKB_ERR_VERSION);     name = 'unsupported format version'
    case (FKB_ERR_UNSUPPORTED); name = 'unsupported model feature'
    case (FKB_ERR_SHAPE);       name = 'shape mismatch'
    case (FKB_ERR_MEMORY);      name = 'out of memory or absurd size'
    case (FKB_ERR_INTERNAL);    name = 'internal error'
    case (FKB_ERR_LAYER);       name = 'custom layer failed'
    case default;               name = 'unknown status'
    end select
  end function fkb_status_name

  pure subroutine set_error(stat, msg, code, text)
    !! Records a failure in the internal (stat, msg) pair.
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer, intent(in) :: code
    character(len=*), intent(in) :: text
    stat = code
    msg = text
  end subroutine set_error

  subroutine report(st, msg, stat, errmsg)
    !! Hands an internal result to the caller of the public API. Like the intrinsic
    !! `allocate`, a failure with `stat` absent stops the program with the message; with
    !! `stat` present nothing stops, and `errmsg` (if present) receives the text.
    integer, intent(in) :: st
    character(len=*), intent(in) :: msg
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    if (present(stat)) then
      stat = st
      if (st /= FKB_OK .and. present(errmsg)) errmsg = msg
    else if (st /= FKB_OK) then
      error stop 'fkb: ' // msg
    end if
  end subroutine report

  subroutine fkb_layer_fail(message)
    !! Called by a custom layer's forward when it cannot compute its output: the running
    !! predict then returns FKB_ERR_LAYER with this message (its output is not to be used).
    !! The first failure of a call is kept.
    character(len=*), intent(in) :: message
    if (layer_failed) return
    layer_failed = .true.
    layer_message = message
  end subroutine fkb_layer_fail

  subroutine clear_layer_error()
    layer_failed = .false.
  end subroutine clear_layer_error

  logical function take_layer_error(msg)
    !! True if a layer failed on this thread since clear_layer_error; msg gets its message.
    character(len=:), allocatable, intent(inout) :: msg
    take_layer_error = layer_failed
    if (layer_failed) msg = trim(layer_message)
    layer_failed = .false.
  end function take_layer_error

end module fkb_errors
